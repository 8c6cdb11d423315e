#!/usr/bin/env bash
# Builds every Lambda function of the workspace with cargo-lambda (release, x86_64, plain
# cargo as the compiler: no zig), writes target/lambda/<bin>/bootstrap and
# target/lambda/<bin>/bootstrap.zip, and prints their sizes against the 10 MiB zipped
# target.
#
#   scripts/lambda-package.sh          # build, then a table
#   scripts/lambda-package.sh --json   # build, then the figures as JSON on stdout
#
# Honours CARGO_TARGET_DIR (default: the workspace's target/); the archives land in
# $CARGO_TARGET_DIR/lambda/. Build output goes to stderr, so --json output stays clean.
# cargo-lambda comes from .venv (scripts/test.sh installs it from PyPI). Exits 3 when a
# zip is over the target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The function crates: package name = bin name = lambda/<bin>/ directory.
functions=(mailroom-ingest mailroom-match mailroom-route mailroom-ticket mailroom-sweep
    mailroom-webhooks mailroom-mailbox-sync mailroom-imap-poll mailroom-scheduler mailroom-send
    mailroom-api mailroom-track mailroom-events mailroom-chat)
# The zipped size each function should stay under (MiB).
zip_target_mib=10

json=false
for arg in "$@"; do
    case "$arg" in
        --json) json=true ;;
        -h | --help)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

cargo_lambda="$root/.venv/bin/cargo-lambda"
if [ ! -x "$cargo_lambda" ]; then
    echo "cargo-lambda is missing ($cargo_lambda): run '.venv/bin/pip install -r scripts/requirements-test.txt'" >&2
    echo "(create the venv first with 'python3 -m venv .venv' if there is none; scripts/test.sh does both)" >&2
    exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
lambda_dir="$CARGO_TARGET_DIR/lambda"

packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done

# One cargo build for all of them, packed as zips; the loose bootstrap is then taken out of
# each zip, so binary and archive are always the same build. The build keeps the workspace
# release profile (lto thin, codegen-units 1, strip, panic unwind): cargo-lambda adds its
# own defaults (e.g. panic=abort) only where the profile is silent, plus
# -C target-cpu=haswell (Lambda's x86_64 CPUs).
start=$(date +%s)
for f in "${functions[@]}"; do rm -f "$lambda_dir/$f/bootstrap" "$lambda_dir/$f/bootstrap.zip"; done
"$cargo_lambda" lambda build --release --x86-64 --compiler cargo --locked \
    --output-format zip --lambda-dir "$lambda_dir" "${packages[@]}" 1>&2
for f in "${functions[@]}"; do
    zip="$lambda_dir/$f/bootstrap.zip"
    [ -f "$zip" ] || { echo "no $zip after the build" >&2; exit 1; }
    python3 - "$zip" "$lambda_dir/$f" <<'EOF_UNZIP'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("bootstrap", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "bootstrap"), 0o755)
EOF_UNZIP
done
elapsed=$(($(date +%s) - start))
echo "built in ${elapsed}s into $lambda_dir" >&2

# The report: sizes in bytes and MiB, zip checked against the target.
python3 - "$json" "$lambda_dir" "$zip_target_mib" "$elapsed" "${functions[@]}" <<'EOF'
import json, os, sys

as_json, lambda_dir, target_mib, elapsed, functions = (
    sys.argv[1] == "true", sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
MIB = 1024 * 1024
rows = []
for f in functions:
    binary = os.path.getsize(os.path.join(lambda_dir, f, "bootstrap"))
    zipped = os.path.getsize(os.path.join(lambda_dir, f, "bootstrap.zip"))
    rows.append({"function": f, "bootstrap_bytes": binary, "bootstrap_mib": round(binary / MIB, 2),
                 "zip_bytes": zipped, "zip_mib": round(zipped / MIB, 2),
                 "zip_target_mib": target_mib, "ok": zipped <= target_mib * MIB})
if as_json:
    print(json.dumps({"lambda_dir": lambda_dir, "build_seconds": elapsed, "functions": rows}, indent=2))
else:
    print(f"{'function':<23}{'bootstrap':>23}{'zip':>23}  target (zip <= {target_mib:g} MiB)")
    for r in rows:
        print(f"{r['function']:<23}{r['bootstrap_bytes']:>12} {r['bootstrap_mib']:>6.2f} MiB"
              f"{r['zip_bytes']:>12} {r['zip_mib']:>6.2f} MiB  {'OK' if r['ok'] else 'OVER'}")
sys.exit(0 if all(r["ok"] for r in rows) else 3)
EOF
