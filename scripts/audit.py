#!/usr/bin/env python3
"""The dependency audit: every package in Cargo.lock against the RustSec advisory
database, as cargo-audit does it.

    scripts/audit.py check [--lock Cargo.lock] [--db scripts/rustsec-advisories.json]
    scripts/audit.py import PATH_TO_ADVISORY_DB_CHECKOUT    (refreshes the snapshot)

Why not cargo-audit itself: it fetches the database from GitHub at every run, which the
machines this project is built on cannot reach (only the package registries), and it takes
minutes to compile on every clean CI run. The database is data; the check is a comparison of
versions. So the database is kept here as a dated snapshot (`rustsec-advisories.json`,
every advisory of rustsec/advisory-db's crates/ folder, with its commit), refreshed with
`import` from a checkout, and this script does cargo-audit's default check over it:
a package whose locked version is neither patched nor unaffected by an advisory that is not
withdrawn is a vulnerability (exit 1); informational advisories (unmaintained, unsound,
notice) are printed as warnings, as cargo-audit does.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DB = ROOT / "scripts" / "rustsec-advisories.json"


def version(v):
    """(major, minor, patch, is_release, prerelease) for ordering; missing parts are 0."""
    core, _, pre = v.strip().partition("-")
    core = core.partition("+")[0]
    nums = [int(x) for x in core.split(".") if x != ""][:3]
    nums += [0] * (3 - len(nums))
    return (nums[0], nums[1], nums[2], 0 if pre else 1, pre)


def comparator_matches(comp, v):
    comp = comp.strip()
    m = re.match(r"^(>=|<=|>|<|=|\^|~)?\s*v?([0-9][0-9A-Za-z.\-+*]*)$", comp)
    if not m:
        raise ValueError(f"unreadable version requirement: {comp!r}")
    op, ver = m.group(1) or "^", m.group(2).rstrip(".*")
    given = len([x for x in ver.partition("-")[0].split(".") if x not in ("", "*")])
    lo = version(ver)
    major, minor, patch = lo[0], lo[1], lo[2]
    if op == ">=":
        return v >= lo
    if op == ">":
        return v > lo
    if op == "<":
        return v < lo
    if op == "<=":
        return v <= lo
    if op == "=":
        if given >= 3:
            return v[:3] == lo[:3] and v[4] == lo[4]
        hi = (major + 1, 0, 0, 0, "") if given == 1 else (major, minor + 1, 0, 0, "")
        return lo <= v < hi
    if op == "~":
        hi = (major + 1, 0, 0, 0, "") if given == 1 else (major, minor + 1, 0, 0, "")
        return lo <= v < hi
    # caret (also a bare version)
    if major > 0 or given == 1:
        hi = (major + 1, 0, 0, 0, "")
    elif minor > 0 or given == 2:
        hi = (0, minor + 1, 0, 0, "")
    else:
        hi = (0, 0, patch + 1, 0, "")
    return lo <= v < hi


def requirement_matches(req, v):
    """A requirement is comparators joined by commas, all of which must hold."""
    return all(comparator_matches(c, v) for c in req.split(",") if c.strip())


def affected(adv, locked):
    v = version(locked)
    if any(requirement_matches(r, v) for r in adv.get("patched", [])):
        return False
    if any(requirement_matches(r, v) for r in adv.get("unaffected", [])):
        return False
    return True


def check(lock_path, db_path):
    db = json.loads(pathlib.Path(db_path).read_text())
    by_package = {}
    for adv in db["advisories"]:
        by_package.setdefault(adv["package"], []).append(adv)
    lock = tomllib.loads(pathlib.Path(lock_path).read_text())
    packages = [(p["name"], p["version"]) for p in lock.get("package", []) if "source" in p]
    vulns, warnings = [], []
    for name, ver in packages:
        for adv in by_package.get(name, []):
            if adv.get("withdrawn") or not affected(adv, ver):
                continue
            line = f"{adv['id']} {name} {ver}: {adv['title']} (patched: {', '.join(adv.get('patched', [])) or 'none'})"
            (warnings if adv.get("informational") else vulns).append(
                (f"[{adv['informational']}] " if adv.get("informational") else "") + line
            )
    print(f"RustSec advisories as of {db['date']} (rustsec/advisory-db {db['commit'][:12]}): "
          f"{len(db['advisories'])} advisories; {len(packages)} locked packages from registries checked")
    for w in warnings:
        print(f"warning: {w}")
    for v in vulns:
        print(f"vulnerable: {v}")
    print(f"{len(vulns)} vulnerabilities, {len(warnings)} warnings")
    return 1 if vulns else 0


def import_db(path):
    repo = pathlib.Path(path)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    date = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%cs"], capture_output=True, text=True)
    if commit.returncode != 0:
        sys.exit(f"{repo} is not a git checkout of rustsec/advisory-db")
    listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", "crates/"],
                             capture_output=True, text=True, check=True).stdout.split()
    advisories = []
    for name in sorted(listing):
        if not name.endswith(".md"):
            continue
        text = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{name}"], capture_output=True,
                              text=True, check=True).stdout
        m = re.match(r"```toml\n(.*?)\n```\s*\n(?:#\s*([^\n]*))?", text, re.S)
        if not m:
            continue
        front = tomllib.loads(m.group(1))
        a, versions = front["advisory"], front.get("versions", {})
        entry = {"id": a["id"], "package": a["package"], "title": (m.group(2) or "").strip(),
                 "patched": versions.get("patched", []), "unaffected": versions.get("unaffected", [])}
        for k in ("informational", "withdrawn"):
            if a.get(k):
                entry[k] = str(a[k])
        advisories.append(entry)
    out = {"source": "https://github.com/rustsec/advisory-db (crates/)", "commit": commit.stdout.strip(),
           "date": date.stdout.strip(), "advisories": advisories}
    DEFAULT_DB.write_text(json.dumps(out, indent=0, ensure_ascii=False) + "\n")
    print(f"{len(advisories)} advisories written to {DEFAULT_DB}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--lock", default=str(ROOT / "Cargo.lock"))
    c.add_argument("--db", default=str(DEFAULT_DB))
    i = sub.add_parser("import")
    i.add_argument("path")
    a = ap.parse_args()
    if a.cmd == "check":
        sys.exit(check(a.lock, a.db))
    import_db(a.path)


if __name__ == "__main__":
    main()
