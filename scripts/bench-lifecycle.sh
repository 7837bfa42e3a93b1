#!/usr/bin/env bash
# Lifecycle benchmarks (release build), numbers for docs/performance.md:
#   1. the raw ECDSA P-256 signing limit of this machine (openssl speed),
#   2. local-CA issuance through certctl's REST API (CSR in, chain out),
#   3. cfssl serve (Debian golang-cfssl) signing the same kind of CSRs,
#   4. the renewal scan over 100,000 certificates on SQLite and PostgreSQL,
#   5. the inventory walk of 1,000 certificates through the paginated API,
#   6. 200 agents heartbeating and polling their work every second for 30 s,
#   7. the dashboard overview over 10,000 certificates in headless Chromium.
# Usage: scripts/bench-lifecycle.sh [issuances] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
c=${2:-8}
target=${CARGO_TARGET_DIR:-target}
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CARGO_TARGET_DIR="$target"

if ! command -v cfssl >/dev/null 2>&1; then
    echo "==> installing golang-cfssl (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-cfssl >/dev/null
fi
source scripts/test-env.sh # a throwaway PostgreSQL on loopback, stopped on exit
scripts/build-plugins.sh local-ca >/dev/null
cargo build -q --release --example lifecycle-bench
bench="$target/release/examples/lifecycle-bench"
work=$(mktemp -d)
trap 'stop_test_env; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "==> raw signing limit: openssl speed ecdsap256 (one core, then both)"
openssl speed -seconds 3 ecdsap256 2>/dev/null | grep -E "^ *256 bits ecdsa"
openssl speed -seconds 3 -multi 2 ecdsap256 2>/dev/null | grep -E "^ *256 bits ecdsa|^ecdsa"

echo "==> certctl: local-CA issuance through the REST API"
CERTCTL_BENCH_PLUGINS="$target/plugins" "$bench" issue "$n" "$c"

echo "==> cfssl serve"
openssl ecparam -genkey -name prime256v1 -noout -out "$work/ca-key.pem"
openssl req -x509 -new -key "$work/ca-key.pem" -out "$work/ca.pem" -days 30 -subj "/CN=cfssl bench CA" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cfssl serve -address 127.0.0.1 -port "$port" -ca "$work/ca.pem" -ca-key "$work/ca-key.pem" >"$work/cfssl.log" 2>&1 &
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/api/v1/cfssl/health" >/dev/null 2>&1 && break; sleep 0.1; done
"$bench" cfssl "http://127.0.0.1:$port" "$n" "$c"

echo "==> renewal scan, 100,000 certificates"
"$bench" scan 100000 "sqlite://$work/scan.db?mode=rwc"
runuser -u postgres -- psql -h 127.0.0.1 -p "$pg_port" -qc "CREATE DATABASE certctl_bench" >/dev/null 2>&1 ||
    psql "$CERTCTL_TEST_POSTGRES_URL" -qc "CREATE DATABASE certctl_bench"
"$bench" scan 100000 "${CERTCTL_TEST_POSTGRES_URL%/*}/certctl_bench"

echo "==> inventory walk"
CERTCTL_BENCH_PLUGINS="$target/plugins" "$bench" walk 1000

echo "==> 200 agents polling one server"
CERTCTL_BENCH_PLUGINS="$target/plugins" "$bench" agents 200 30

echo "==> dashboard overview with 10,000 certificates (headless Chromium)"
"$bench" overview 10000 10
