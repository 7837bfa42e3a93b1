#!/usr/bin/env bash
# The run command: builds everything and starts the server on the embedded defaults
# (SQLite in ./certctl-data, self-generated TLS). Extra arguments go to certctl-server.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
scripts/build-plugins.sh
cargo build --release --bins
# The built-in plugins are found next to the binary (target/plugins).
exec "${CARGO_TARGET_DIR:-target}/release/certctl-server" "$@"
