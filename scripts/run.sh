#!/usr/bin/env bash
# The run command: builds everything and starts the server on the embedded defaults
# (SQLite in ./certctl-data, self-generated TLS). Extra arguments go to certctl-server.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release --bins
exec target/release/certctl-server "$@"
