#!/usr/bin/env bash
# Builds every Lambda function of the workspace with cargo-lambda (release; for x86_64
# with plain cargo as the compiler, for arm64 with cargo-lambda's Zig), writes
# target/lambda/<bin>/bootstrap and target/lambda/<bin>/bootstrap.zip, and prints their
# sizes against the 10 MiB zipped target. The functions are those of the Makefile's
# `build-<LogicalId>: BIN = <bin>` lines, the map `sam build` uses too.
#
#   scripts/lambda-package.sh                 # build for x86_64, then a table
#   scripts/lambda-package.sh --json          # build, then the figures as JSON on stdout
#   scripts/lambda-package.sh --arch arm64    # build for arm64 (Graviton)
#   scripts/lambda-package.sh --check-arch ARCH FILE...   # only check the binaries' ELF machine
#
# Honours CARGO_TARGET_DIR (default: the workspace's target/); the archives land in
# $CARGO_TARGET_DIR/lambda/. Build output goes to stderr, so --json output stays clean.
# cargo-lambda comes from .venv (scripts/test.sh installs it from PyPI). Exits 3 when a
# zip is over the target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The function crates: package name = bin name = lambda/<bin>/ directory.
mapfile -t functions < <(sed -n 's/^build-[A-Za-z]*Function: BIN = \([a-z-]*\)$/\1/p' Makefile)
[ "${#functions[@]}" -gt 0 ] || { echo "no 'build-...Function: BIN = ...' lines in Makefile" >&2; exit 1; }
# The zipped size each function should stay under (MiB).
zip_target_mib=10
# Functions built with the release-small profile (opt-level "s", Cargo.toml): the api is
# over the target at opt-level 3, and its requests wait on storage rather than compute.
small=(mailroom-api)

# ELF e_machine (2 bytes, little-endian, at offset 18) of each file against the
# architecture: a binary deployed as the other one fails at start with an exec format error.
check_arch() {
    local arch=$1 want f got
    shift
    case "$arch" in
        x86_64) want=003e ;;
        arm64) want=00b7 ;;
        *) echo "unknown architecture '$arch' (arm64 or x86_64)" >&2; return 2 ;;
    esac
    for f in "$@"; do
        got=$(od -An -t x2 -j 18 -N 2 "$f" | tr -d ' ')
        [ "$got" = "$want" ] || { echo "$f is not an $arch binary (ELF machine 0x$got)" >&2; return 1; }
    done
}

json=false
arch=x86_64
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json=true ;;
        --arch)
            arch=${2:?--arch needs arm64 or x86_64}
            shift
            ;;
        --check-arch)
            shift
            check_arch "$@"
            exit
            ;;
        -h | --help)
            sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done
case "$arch" in
    x86_64) target_args=(--x86-64 --compiler cargo) ;;
    arm64) target_args=(--arm64) ;;
    *) echo "unknown architecture '$arch' (arm64 or x86_64)" >&2; exit 2 ;;
esac

cargo_lambda="$root/.venv/bin/cargo-lambda"
if [ ! -x "$cargo_lambda" ]; then
    echo "cargo-lambda is missing ($cargo_lambda): run '.venv/bin/pip install -r scripts/requirements-test.txt'" >&2
    echo "(create the venv first with 'python3 -m venv .venv' if there is none; scripts/test.sh does both)" >&2
    exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
lambda_dir="$CARGO_TARGET_DIR/lambda"

packages=()
small_packages=()
for f in "${functions[@]}"; do
    if [[ " ${small[*]} " == *" $f "* ]]; then small_packages+=(-p "$f"); else packages+=(-p "$f"); fi
done

# One cargo build for all of them (a second one for those in `small`), packed as zips; the
# loose bootstrap is then taken out of each zip, so binary and archive are always the same
# build. The builds keep the workspace's profiles (lto thin, codegen-units 1, strip, panic
# unwind): cargo-lambda adds its own defaults (e.g. panic=abort) only where the profile is
# silent, plus -C target-cpu=haswell (Lambda's x86_64 CPUs).
start=$(date +%s)
for f in "${functions[@]}"; do rm -f "$lambda_dir/$f/bootstrap" "$lambda_dir/$f/bootstrap.zip"; done
if [ "${#packages[@]}" -gt 0 ]; then
    "$cargo_lambda" lambda build --release "${target_args[@]}" --locked \
        --output-format zip --lambda-dir "$lambda_dir" "${packages[@]}" 1>&2
fi
if [ "${#small_packages[@]}" -gt 0 ]; then
    "$cargo_lambda" lambda build --profile release-small "${target_args[@]}" --locked \
        --output-format zip --lambda-dir "$lambda_dir" "${small_packages[@]}" 1>&2
fi
for f in "${functions[@]}"; do
    zip="$lambda_dir/$f/bootstrap.zip"
    [ -f "$zip" ] || { echo "no $zip after the build" >&2; exit 1; }
    python3 - "$zip" "$lambda_dir/$f" <<'EOF_UNZIP'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("bootstrap", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "bootstrap"), 0o755)
EOF_UNZIP
    check_arch "$arch" "$lambda_dir/$f/bootstrap"
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
