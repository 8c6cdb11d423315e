#!/usr/bin/env bash
# Every figure of docs/performance.md, on this machine, and at the end one table of them,
# each beside its target (scripts/bench_table.py). Not part of scripts/test.sh: it takes
# 30-60 minutes and its figures are read, not asserted.
#
#   scripts/bench.sh [--record] [CONVERSATIONS]   # default 2000, seed 4242 (issue 23's corpus)
#
# 1. `mailroom bench`: parse floor, full pipeline on embedded storage, latency
# 2. tests/src/bin/cost.rs: AWS requests and US$ per 100,000 messages, against moto
# 3. scripts/lambda-package.sh: cargo lambda build --release, bootstrap and zip sizes
# 4. scripts/coldstart.py: init and first-event latency of each function, and peak RSS
#    with a generated 25 MB message
# 5. criterion: the parse-classify-thread core (shared/app/benches/core.rs)
# 6. `mailroom bench-report`: report latency at 10k and 100k conversations
# 7. `mailroom bench-web`: the web inbox's pages with 100k conversations
# 8. `mailroom bench-import`: a 2 GiB mbox imported, killed half-way and resumed (peak RSS)
# Each step's figures go to target/bench/DATE/*.json; a step that fails is reported and the
# others still run (its row of the table says "not run"). --record appends the run's
# one-line summary to the history table at the end of docs/performance.md.
# Needs what scripts/test.sh installs (.venv with moto and cargo-lambda) and the shared
# tools beside this checkout (../shared/tools/gen_corpus.py).
set -euo pipefail
cd "$(dirname "$0")/.."
record=false
if [ "${1:-}" = "--record" ]; then record=true; shift; fi
conversations=${1:-2000}
gen=../shared/tools/gen_corpus.py
if [ ! -f "$gen" ]; then
    echo "$gen is missing: the benchmarks generate their mailboxes with it" >&2
    exit 1
fi
out=target/bench/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
failed=()

step() { printf '\n== %s\n' "$*" >&2; }
# run NAME CMD...: CMD's JSON to $out/NAME.json; a failure is noted, not fatal.
run() {
    local name=$1; shift
    if ! "$@" > "$out/$name.json"; then
        failed+=("$name")
        rm -f "$out/$name.json"
        echo "bench.sh: step $name failed (exit status $?)" >&2
    fi
}

step "build (release)"
cargo build --release --locked --bin mailroom --bin cost

step "mailroom bench --conversations $conversations --seed 4242"
run bench target/release/mailroom bench --conversations "$conversations" --seed 4242 --generator "$gen" --json

step "AWS cost per message (against moto)"
# 30 conversations: moto's transactional writes slow down and grow its memory with the
# table's size (at 100 it passed 10 GB since the reports stage writes one per message).
run cost target/release/cost --conversations 30 --json

step "Lambda packages"
# Exit status 3 is a zip over the target: a figure for the table, not a failure.
scripts/lambda-package.sh --json > "$out/lambda.json" || [ $? -eq 3 ] || { failed+=(lambda); rm -f "$out/lambda.json"; }

# The functions run with the template's GLIBC_TUNABLES (Globals), as on Lambda.
tunables=$(sed -n 's/^ *GLIBC_TUNABLES: *//p' infra/template.yaml)
step "cold start"
run coldstart .venv/bin/python scripts/coldstart.py --runs 5 --env "GLIBC_TUNABLES=$tunables" --json

step "a 25 MB message through every function (peak RSS)"
# 60 attachments of 310,000 random bytes: 25.5 MB once encoded, as in docs/performance.md.
python3 - "$out/big25.eml" <<'EOF_BIG'
import base64, os, sys
parts = ["From: Big Customer <big@customer.example>\r\nTo: support@acme.example\r\n"
         "Subject: 60 scans\r\nMessage-ID: <big25@customer.example>\r\n"
         "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
         "Content-Type: text/plain\r\n\r\nThe scans you asked for.\r\n"]
for i in range(60):
    body = base64.encodebytes(os.urandom(310_000)).decode().replace("\n", "\r\n")
    parts.append(f"--b\r\nContent-Type: application/octet-stream; name=scan{i}.bin\r\n"
                 f"Content-Disposition: attachment; filename=scan{i}.bin\r\n"
                 f"Content-Transfer-Encoding: base64\r\n\r\n{body}")
parts.append("--b--\r\n")
open(sys.argv[1], "w").write("".join(parts))
EOF_BIG
run coldstart-25mb .venv/bin/python scripts/coldstart.py --runs 2 --raw "$out/big25.eml" \
    --env "GLIBC_TUNABLES=$tunables" --json
rm -f "$out/big25.eml"

step "criterion: parse-classify-thread core"
cargo bench --locked -p mailroom-app --features embedded --bench core >&2 || failed+=(criterion)

step "report latency at 10k and 100k conversations (embedded)"
run report target/release/mailroom bench-report --conversations 10000,100000 --json

step "web inbox pages with 100k conversations (embedded)"
run web target/release/mailroom bench-web --conversations 100000 --json

step "a 2 GiB mbox: import killed half-way, resumed; peak RSS (embedded)"
run import target/release/mailroom bench-import --mib 2048 --json

step "the figures against issue 23's targets"
python3 scripts/bench_table.py "$out" | tee "$out/table.md"
if $record; then
    python3 scripts/bench_table.py "$out" --history >> docs/performance.md
    echo "appended to docs/performance.md" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench.sh: failed steps: ${failed[*]}" >&2
    exit 1
fi
