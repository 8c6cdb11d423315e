#!/usr/bin/env python3
"""Reads every message of a folder with `mailroom parse --json` (one or two binaries) and
with Python's standard `email` package (default policy), and prints what differs.

    scripts/parse_compare.py [--before BIN] --after BIN [DIR ...]   (default ../shared/corpus)

Prints, per binary: messages read, messages with U+FFFD (the replacement character) in a
header (From, Sender, To, Cc, Reply-To, Subject) or an attachment's name, messages without
a sender, messages whose attachment count differs from Python's; and with --before, every
header that became less readable (more U+FFFD, or empty where it was not) and every
message whose headers changed, for review. Exit status 1 when a header became less
readable. Python's attachments: every leaf part that is not part of the body Python picks
(`get_body`) and is an attachment by its disposition, its file name or its type (not
text), an attached message counting as one. "No sender": a From header is there but no
address was read from it.
"""

import argparse
import email
import email.policy
import json
import pathlib
import subprocess
import sys

HEADERS = ["from", "sender", "to", "cc", "reply_to", "subject"]
FFFD = "\ufffd"


def files(dirs):
    for d in dirs:
        for p in sorted(pathlib.Path(d).rglob("*")):
            if p.is_file() and p.suffix not in (".json", ".md", ".txt") and p.name not in ("LICENSE", "COPYING"):
                yield p


def mailroom(binary, path):
    r = subprocess.run([binary, "parse", "--json", str(path)], capture_output=True, timeout=60)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def header_texts(m):
    """Header name -> one string of what was read (names and addresses)."""
    out = {}
    for h in HEADERS:
        v = m.get(h)
        if h == "subject":
            out[h] = v or ""
        else:
            boxes = v if isinstance(v, list) else ([v] if v else [])
            out[h] = ", ".join(f"{b.get('name') or ''} <{b.get('email')}>" for b in boxes)
    return out


def python_attachments(path):
    try:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = set()
        try:
            b = msg.get_body(preferencelist=("related", "html", "plain"))
            if b is not None:
                for p in b.walk():
                    body.add(id(p))
        except Exception:
            pass
        out = []

        def visit(part):
            if part.get_content_maintype() == "multipart":
                for sub in part.iter_parts():
                    visit(sub)
            elif id(part) in body or part is msg:
                pass
            elif part.get_content_disposition() == "attachment" or part.get_filename() \
                    or part.get_content_maintype() != "text":
                # Unnamed inline text parts besides the body are read as more body text
                # (mail-parser joins them) or as attachments (Python): neither is wrong.
                out.append(part)

        visit(msg)
        return len(out)
    except Exception:
        return None


def has_from(path):
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    return msg.get("From") is not None


def count_fffd(m):
    n = sum(t.count(FFFD) for t in header_texts(m).values())
    n += sum((a.get("name") or "").count(FFFD) for a in m.get("attachments", []))
    return n


def summary(label, results, py):
    read = [r for r in results.values() if r is not None]
    with_fffd = [p for p, r in results.items() if r is not None and count_fffd(r) > 0]
    no_sender = [p for p, r in results.items() if r is not None and not r.get("from") and has_from(p)]
    att_diff = [
        p for p, r in results.items() if r is not None and py[p] is not None and len(r["attachments"]) != py[p]
    ]
    body_fffd = [p for p, r in results.items() if r is not None and FFFD in (r.get("text") or "")]
    print(f"{label}: {len(read)} of {len(results)} read; U+FFFD in a header or file name: "
          f"{len(with_fffd)}; in the text body: {len(body_fffd)}; no sender: {len(no_sender)}; "
          f"attachment count differs from Python's: {len(att_diff)}")
    return with_fffd, no_sender, att_diff


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before")
    ap.add_argument("--after", required=True)
    ap.add_argument("--list", action="store_true", help="list the messages behind each count")
    ap.add_argument("dirs", nargs="*", default=[str(pathlib.Path(__file__).resolve().parents[2] / "shared/corpus")])
    a = ap.parse_args()
    paths = list(files(a.dirs))
    py = {p: python_attachments(p) for p in paths}
    runs = [("before", a.before), ("after", a.after)] if a.before else [("after", a.after)]
    results = {label: {p: mailroom(b, p) for p in paths} for label, b in runs}
    for label, _ in runs:
        lists = summary(label, results[label], py)
        if a.list:
            for name, l in zip(["U+FFFD", "no sender", "attachments differ"], lists):
                for p in l:
                    r = results[label][p]
                    extra = f" mailroom {len(r['attachments'])} python {py[p]}" if name == "attachments differ" else ""
                    print(f"  {name}: {p}{extra}")
    worse = 0
    if a.before:
        changed = 0
        for p in paths:
            b, n = results["before"][p], results["after"][p]
            if b is None or n is None:
                if b is not None:
                    print(f"LESS READABLE {p}: no longer parses")
                    worse += 1
                continue
            hb, hn = header_texts(b), header_texts(n)
            for h in HEADERS:
                if hb[h] == hn[h]:
                    continue
                less = hn[h].count(FFFD) > hb[h].count(FFFD) or (hb[h].strip() and not hn[h].strip())
                if less:
                    worse += 1
                    print(f"LESS READABLE {p} {h}: {hb[h]!r} -> {hn[h]!r}")
                else:
                    changed += 1
                    print(f"changed {p} {h}: {hb[h]!r} -> {hn[h]!r}")
        print(f"headers changed: {changed}; less readable: {worse}")
    sys.exit(1 if worse else 0)


if __name__ == "__main__":
    main()
