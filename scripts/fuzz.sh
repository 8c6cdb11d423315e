#!/usr/bin/env bash
# Fuzz the parse-and-classify path with cargo-fuzz (libFuzzer, nightly toolchain).
#   scripts/fuzz.sh [SECONDS]      default 600
# Seeds: every message of ../shared/corpus (read in place, copied into a scratch corpus
# under target/, never into the project). Crashes land in fuzz/artifacts/parse_classify/;
# turn each into a regression test (shared/core/tests/fuzz_regressions.rs).
# -O: release semantics, as shipped (cargo-fuzz's default also turns on debug assertions
# in every dependency, and mail-parser 0.11 has a debug_assert! malformed mail trips).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz (needs the nightly toolchain: rustup toolchain install nightly)" >&2
    exit 1
fi
seeds="target/fuzz-seeds"
mkdir -p "$seeds"
if [ -d ../shared/corpus ]; then
    find ../shared/corpus -type f ! -name LICENSE ! -name '*.json' ! -name '*.md' -size -256k -print0 |
        while IFS= read -r -d '' f; do cp -n "$f" "$seeds/$(sha1sum "$f" | cut -c1-16)"; done
fi
mkdir -p fuzz/corpus/parse_classify
cd fuzz
exec cargo +nightly fuzz run -O parse_classify corpus/parse_classify "../$seeds" -- \
    -max_total_time="$secs" -max_len=262144 -rss_limit_mb=2048 -timeout=10
