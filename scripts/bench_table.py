#!/usr/bin/env python3
"""One table of every figure `scripts/bench.sh` measured, each beside its target (issue 23)
and, where there is one, the floor it is compared with.

    python3 scripts/bench_table.py DIR            # the table (markdown), from DIR/*.json
    python3 scripts/bench_table.py DIR --history  # one row for docs/performance.md's history

DIR holds what bench.sh wrote: bench.json (`mailroom bench --json`), cost.json
(tests/src/bin/cost.rs), lambda.json (scripts/lambda-package.sh), coldstart.json and
coldstart-25mb.json (scripts/coldstart.py), report.json (`mailroom bench-report`),
web.json (`mailroom bench-web`), import.json (`mailroom bench-import`). A file that is
missing (its step failed or was skipped) shows as "not run": never as met.
"""
import datetime
import json
import subprocess
import sys
from pathlib import Path


def load(d: Path, name: str):
    try:
        return json.loads((d / name).read_text())
    except (OSError, ValueError):
        return None


def rows(d: Path) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, floor or reference, met)"""
    out = []

    def add(figure, value, target, ok, floor="", fmt="{:,.1f}"):
        measured = "not run" if value is None else fmt.format(value)
        met = "not run" if value is None else "" if ok is None else ("met" if ok(value) else "**missed**")
        out.append((figure, measured, target, floor, met))

    b = load(d, "bench.json")
    floor = b["floor"]["messages_per_s"] if b else None
    pipe = b["pipeline"]["messages_per_s"] if b else None
    ops = sum(b["operations_per_message"].values()) if b else None
    add("1. embedded pipeline, messages/s (`mailroom bench`)", pipe, ">= 2,000",
        lambda v: v >= 2000, f"floor {floor:,.0f}" if floor else "", "{:,.0f}")
    add("1. floor / pipeline", floor / pipe if b else None, "<= 3x", lambda v: v <= 3, "", "{:.1f}x")
    add("1. storage operations per message", ops, "< 20", lambda v: v < 20)
    if b:
        add("1. latency p50, ms (one message at a time)", b["latency"]["p50_ms"], "-", None, f"p99 {b['latency']['p99_ms']:.1f}", "{:.2f}")

    c = load(d, "cost.json")
    for label, target in (("full", 2.50), ("one", 2.80)):
        sc = next((s for s in (c or {}).get("scenarios", []) if s["scenario"].startswith(label)), None)
        add(f"2. AWS US$ per 100,000 messages, {'full batches' if label == 'full' else 'batches of one'}",
            sc["usd_per_100k"] if sc else None, f"<= {target:.2f}", lambda v, t=target: v <= t, "", "{:.3f}")

    r = load(d, "report.json")
    if r:
        by_n = {t["conversations"]: {name: ms for name, ms, _ in t["reports"]} for t in r}
        lo, hi = min(by_n), max(by_n)
        for name in by_n[hi]:
            a, z = by_n[lo].get(name), by_n[hi][name]
            add(f"3. report '{name}' at {hi:,} conversations, ms", z, "< 100", lambda v: v < 100,
                f"{a:.1f} at {lo:,}" if a else "")
            if a:
                add(f"3. report '{name}', {hi:,} over {lo:,}", z / a, "<= 1.5x", lambda v: v <= 1.5, "", "{:.2f}x")
        page = {t["conversations"]: t.get("page_ms") for t in r}
        if page.get(hi) is not None:
            add(f"3. reports page at {hi:,} conversations, ms", page[hi], "< 200", lambda v: v < 200,
                f"{page[lo]:.1f} at {lo:,}" if page.get(lo) is not None else "")
    else:
        add("3. reports at 100,000 conversations, ms", None, "< 100", lambda v: False)
    w = load(d, "web.json")
    for p in (w or {}).get("pages", []):
        add(f"3. web page {p['page']} at {w['conversations']:,} conversations, p50 ms", p["p50_ms"], "< 200",
            lambda v: v < 200)

    i = load(d, "import.json")
    add("4. 2 GiB mbox import, peak RSS MiB", i["first_run_peak_rss_mib"] if i else None, "< 200",
        lambda v: v < 200, f"resumed run {i['second_run_peak_rss_mib']:.1f}" if i else "")

    big = load(d, "coldstart-25mb.json")
    for f in (big or {}).get("functions", []):
        # The target is match's (issue 23); the others are shown for reference.
        if f["function"] == "mailroom-match":
            add("5. 25 MB message through mailroom-match, peak RSS MiB", f["rss_mib"]["max"], "<= 80",
                lambda v: v <= 80)
        else:
            add(f"5. 25 MB message through {f['function']}, peak RSS MiB", f["rss_mib"]["max"], "-", None)
    if big is None:
        add("5. 25 MB message through match, peak RSS MiB", None, "<= 80", lambda v: False)
    cs = load(d, "coldstart.json")
    if cs:
        worst = max(cs["functions"], key=lambda f: f["init_ms"]["median"] or 0)
        add("5. Lambda init, slowest function's median ms", worst["init_ms"]["median"], "< 50",
            lambda v: v < 50, worst["function"])
    else:
        add("5. Lambda init, ms", None, "< 50", lambda v: False)
    lp = load(d, "lambda.json")
    if lp:
        worst = max(lp["functions"], key=lambda f: f["zip_mib"])
        add("5. largest Lambda zip, MiB", worst["zip_mib"], "< 10", lambda v: v < 10, worst["function"], "{:.2f}")
    else:
        add("5. largest Lambda zip, MiB", None, "< 10", lambda v: False)
    return out


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = Path(sys.argv[1])
    table = rows(d)
    if "--history" in sys.argv[2:]:
        # date | commit | pipeline msg/s | ops/msg | US$ full | US$ one | report 100k | import RSS | met
        get = {f: m for f, m, *_ in table}

        def first(prefix):
            return next((m for f, m in get.items() if f.startswith(prefix)), "not run")

        met = sum(1 for *_, m in table if m == "met")
        targets = sum(1 for *_, m in table if m)  # rows with a target
        report_all = "3. report 'all 30 days' at"
        print(f"| {datetime.date.today()} | {commit()} | {first('1. embedded pipeline')} | "
              f"{first('1. storage operations')} | {first('2. AWS US$ per 100,000 messages, full')} | "
              f"{first('2. AWS US$ per 100,000 messages, batches')} | "
              f"{first(report_all)} | "
              f"{first('4. 2 GiB')} | {met} of {targets} |")
        return 0
    print(f"Figures of {d} (commit {commit()}, {datetime.date.today()})\n")
    print("| figure | measured | target | floor / reference | |")
    print("| --- | ---: | ---: | --- | --- |")
    for r in table:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
