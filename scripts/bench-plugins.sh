#!/usr/bin/env bash
# Plugin runtime benchmark (release): compile times, instantiate+call, reused-instance call,
# native equivalent, and the size of every built plugin. Usage: scripts/bench-plugins.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
scripts/build-plugins.sh >/dev/null
cargo run -q --release --example plugin-bench -- "$target/plugins-testing" "${1:-2000}"
echo "component sizes:"
ls -l "$target"/plugins/*.wasm "$target"/plugins-testing/*.wasm | awk '{printf "  %-40s %8d bytes\n", $NF, $5}'
