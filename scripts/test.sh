#!/usr/bin/env bash
# The test command: installs and starts what the tests need (PostgreSQL, promtool), then runs
# formatting, lints and the whole test suite. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
source scripts/test-env.sh

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
log="$CERTCTL_TEST_STATE/cargo-test.log"
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "certctl tests: %d passed, %d failed\n", p, f }' "$log"
