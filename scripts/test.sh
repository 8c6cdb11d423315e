#!/usr/bin/env bash
# Installs what the tests need and runs every test:
#   - moto[server], cfn-lint and cargo-lambda from PyPI into .venv (under the project)
#   - dovecot from Debian's packages (dovecot-imapd; the IMAP tests run it as a
#     user-level process with their own config)
#   - chromium from Debian's packages, playwright-core and axe-core from npm
#     (tests/browser: the web inbox walk and the reports dashboard, headless)
#   - one moto server for the whole run, on loopback
# then builds the workspace once and runs cargo fmt --check, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Each phase's time is printed at the end (docs/architecture.md, "The test loop").
phases=()
phase_name=""
phase_start=$(date +%s)
run_start=$phase_start
step() {
    local now
    now=$(date +%s)
    if [ -n "$phase_name" ]; then phases+=("$(printf '%-44s %4ds' "$phase_name" $((now - phase_start)))"); fi
    phase_name="$*"
    phase_start=$now
    printf '\n== %s (%s)\n' "$*" "$(date +%T)"
}
summary() {
    local now
    now=$(date +%s)
    printf '\n== time per phase\n'
    printf '%s\n' "${phases[@]}"
    printf '%-44s %4ds\n' "total" $((now - run_start))
}

step "Python tools into .venv"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

# Debian's packages are installed only on Debian (or a derivative with apt-get), as root;
# anywhere else the script stops and says what to install.
on_debian() { [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }

step "dovecot (Debian's dovecot-imapd)"
if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
    if [ "$(id -u)" = 0 ] && on_debian; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
        # Only the binaries are wanted: the tests start their own instance.
        (systemctl stop dovecot 2>/dev/null || service dovecot stop 2>/dev/null || true)
    else
        echo "dovecot is missing: install it (Debian and Ubuntu: 'sudo apt-get install dovecot-imapd'; elsewhere your system's dovecot package, with its imap server) and try again" >&2
        exit 1
    fi
fi

step "chromium (Debian's) and tests/browser's npm packages"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && on_debian; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium is missing at /usr/bin/chromium: install it (Debian: 'sudo apt-get install chromium'; elsewhere your system's Chromium, linked as /usr/bin/chromium) and try again" >&2
        exit 1
    fi
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is missing: install Node.js 20 or later with npm and try again" >&2
        exit 1
    fi
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

step "moto server"
moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p .test-run
.venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$moto_port" >.test-run/moto.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$moto_port),1)" 2>/dev/null; then break; fi
    sleep 0.2
done
export MAILROOM_TEST_MOTO="http://127.0.0.1:$moto_port"
echo "moto on $MAILROOM_TEST_MOTO"

step "format"
cargo fmt --all -- --check

step "dependency audit (RustSec advisories, scripts/audit.py)"
python3 scripts/audit.py check

step "build"
cargo build --workspace --all-targets --locked

# clippy runs beside the tests at the lowest CPU priority: the tests spend much of their
# time waiting on servers and browsers, and clippy (about 100 s alone) fills that time. It
# starts once the test run has checked its (already built) binaries, so that neither
# waits for the other's lock on target/; if it starts early, the tests wait, no worse than
# running one after the other.
step "tests, with clippy beside them"
(sleep 20; exec nice -n 19 cargo clippy --workspace --all-targets --locked -- -D warnings) \
    >.test-run/clippy.log 2>&1 &
clippy_pid=$!
status=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast || status=$?
else
    cargo test --workspace --locked --no-fail-fast || status=$?
fi
step "clippy (the rest of it)"
if ! wait $clippy_pid; then
    cat .test-run/clippy.log
    echo "clippy found problems (above)" >&2
    status=1
else
    tail -1 .test-run/clippy.log
fi
step "done"
summary
exit $status
