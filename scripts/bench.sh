#!/usr/bin/env bash
# Every figure of docs/performance.md, on this machine. Not part of scripts/test.sh: it
# takes 15-30 minutes and its figures are read, not asserted.
#
#   scripts/bench.sh [CONVERSATIONS]     # default 1000 (about 3,600 messages)
#
# 1. `mailroom bench`: parse floor, full pipeline on embedded storage, latency
# 2. tests/src/bin/cost.rs: AWS requests and US$ per 100,000 messages, against moto
# 3. scripts/lambda-package.sh: cargo lambda build --release, bootstrap and zip sizes
# 4. scripts/coldstart.py: init and first-event latency of each function
# 5. criterion: the parse-classify-thread core (shared/app/benches/core.rs)
# 6. `mailroom bench-report`: report latency at 10k and 100k conversations
# 7. `mailroom bench-web`: the web inbox's pages with 100k conversations
# 8. `mailroom bench-import`: a 2 GiB mbox imported, killed half-way and resumed (peak RSS)
# Needs what scripts/test.sh installs (.venv with moto and cargo-lambda) and the shared
# tools beside this checkout (../shared/tools/gen_corpus.py).
set -euo pipefail
cd "$(dirname "$0")/.."
conversations=${1:-1000}
gen=../shared/tools/gen_corpus.py
if [ ! -f "$gen" ]; then
    echo "$gen is missing: the benchmarks generate their mailboxes with it" >&2
    exit 1
fi

step() { printf '\n== %s\n' "$*"; }

step "build (release)"
cargo build --release --locked --bin mailroom --bin cost

step "mailroom bench --conversations $conversations"
target/release/mailroom bench --conversations "$conversations" --generator "$gen"

step "AWS cost per message (against moto)"
# 30 conversations: moto's transactional writes slow down and grow its memory with the
# table's size (at 100 it passed 10 GB since the reports stage writes one per message).
target/release/cost --conversations 30

step "Lambda packages"
scripts/lambda-package.sh

step "cold start"
.venv/bin/python scripts/coldstart.py --runs 5

step "criterion: parse-classify-thread core"
cargo bench --locked -p mailroom-app --features embedded --bench core

step "report latency at 10k and 100k conversations (embedded)"
target/release/mailroom bench-report --conversations 10000,100000

step "web inbox pages with 100k conversations (embedded)"
target/release/mailroom bench-web --conversations 100000

step "a 2 GiB mbox: import killed half-way, resumed; peak RSS (embedded)"
target/release/mailroom bench-import --mib 2048
