#!/usr/bin/env bash
# The test command: installs and starts what the tests need (PostgreSQL, promtool), then runs
# formatting, lints and the whole test suite. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
source scripts/test-env.sh

echo "==> building plugins (wasm32-wasip2)"
scripts/build-plugins.sh
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
export CERTCTL_TEST_PLUGIN_DIR="$target_dir/plugins"
export CERTCTL_TEST_TESTING_PLUGIN_DIR="$target_dir/plugins-testing"

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy (host natively, SDK and plugins natively and for wasm32-wasip2)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --target wasm32-wasip2 -p certctl-sdk -p webhook -p httpreq -p powerdns -p cloudflare -p route53 -p digitalocean -p rfc2136 -p misbehave -p future-contract -p kv-issuer -p local-ca -p acme -p slack -p teams -p pagerduty -p email -- -D warnings
echo "==> cargo test"
log="$CERTCTL_TEST_STATE/cargo-test.log"
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "certctl tests: %d passed, %d failed\n", p, f }' "$log"

echo "==> Helm chart checks (scripts/chart-check.sh)"
CERTCTL_SERVER_BIN="$target_dir/debug/certctl-server" scripts/chart-check.sh
