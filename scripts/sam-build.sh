#!/usr/bin/env bash
# `sam build` for one architecture, then a check of what it built: every function of the
# Makefile has .aws-sam/build/<LogicalId>/bootstrap, an ELF binary for that architecture,
# byte for byte the one scripts/lambda-package.sh put in target/lambda/<bin>/. Prints the
# build time and each binary's size.
#
#   scripts/sam-build.sh                  # arm64, the template's default
#   scripts/sam-build.sh --arch x86_64    # then deploy with --parameter-overrides Architecture=x86_64
#   scripts/sam-build.sh --arch x86_64 -- --debug   # anything after -- goes to sam build
#
# SAM gives a Makefile no architecture, so this script passes the same value to both: to
# make as MAILROOM_ARCH and to the template as its Architecture parameter.
# Needs the SAM CLI (`pip install aws-sam-cli`, or AWS's installer), Rust and cargo-lambda
# in .venv (scripts/test.sh installs it; or `pip install cargo-lambda`, which brings Zig
# for arm64). No Docker.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=arm64
sam_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --arch)
            arch=${2:?--arch needs arm64 or x86_64}
            shift
            ;;
        --)
            shift
            sam_args=("$@")
            break
            ;;
        -h | --help)
            sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
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
    arm64 | x86_64) ;;
    *) echo "unknown architecture '$arch' (arm64 or x86_64)" >&2; exit 2 ;;
esac
sam=${SAM:-$(command -v sam || true)}
if [ -z "$sam" ]; then
    echo "the SAM CLI is not installed: 'pip install aws-sam-cli' (or AWS's installer), or set SAM=/path/to/sam" >&2
    exit 1
fi

start=$(date +%s)
MAILROOM_ARCH=$arch "$sam" build --parameter-overrides "Architecture=$arch" "${sam_args[@]}"
elapsed=$(($(date +%s) - start))

lambda_dir="${CARGO_TARGET_DIR:-target}/lambda"
n=0
printf '%-22s %-22s %12s  %s\n' function binary bytes sha256
while read -r logical bin; do
    built=.aws-sam/build/$logical/bootstrap
    [ -f "$built" ] || { echo "sam build made no $built" >&2; exit 1; }
    scripts/lambda-package.sh --check-arch "$arch" "$built"
    cmp -s "$built" "$lambda_dir/$bin/bootstrap" || {
        echo "$built differs from $lambda_dir/$bin/bootstrap (scripts/lambda-package.sh's)" >&2
        exit 1
    }
    printf '%-22s %-22s %12s  %.16s\n' "$logical" "$bin" "$(stat -c %s "$built")" "$(sha256sum "$built")"
    n=$((n + 1))
done < <(sed -n 's/^build-\([A-Za-z]*Function\): BIN = \([a-z-]*\)$/\1 \2/p' Makefile)
echo "sam build for $arch: $n functions in ${elapsed}s, each the same binary as scripts/lambda-package.sh's"
