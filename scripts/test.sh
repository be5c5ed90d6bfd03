#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a warm one:
#   1. installs/caches everything the tests need (stack/bootstrap.sh: Debian packages, tansu, Python venv with the
#      Debezium jars, the Connect launcher), all under ~/.cache/ledgerstream;
#   2. formatting and lint gates;
#   3. unit tests and integration tests. The end-to-end tests start their own isolated native stacks
#      (PostgreSQL, tansu, Kafka Connect + Debezium) on private ports and stop them again; they fail loudly, never
#      skip, when a service cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

export LEDGERSTREAM_CACHE="${LEDGERSTREAM_CACHE:-$HOME/.cache/ledgerstream}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LEDGERSTREAM_CACHE/target}"
export PATH="$LEDGERSTREAM_CACHE/tools/bin:$PATH"

step() { printf '\n==> %s (%s)\n' "$*" "$(date +%T)"; }

step "bootstrap"
bash stack/bootstrap.sh

step "stack tooling tests (pytest)"
"$LEDGERSTREAM_CACHE/venv/bin/python" -m pytest -q stack/tools

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "build tests"
cargo test --workspace --all-features --no-run

step "tests"
# One test binary at a time (cargo's default); inside the end-to-end binaries each test owns its own stack.
cargo test --workspace --all-features -- --nocapture 2>&1 | tee "$LEDGERSTREAM_CACHE/logs/last-test.log"
step "done"
# One closing line over every test binary (cargo's own last line is the doc-test run of the last crate).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$LEDGERSTREAM_CACHE/logs/last-test.log"
