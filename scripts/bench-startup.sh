#!/usr/bin/env bash
# Measures cold start (exec -> first successful GET /health over HTTPS) and idle RSS of the
# release server on the embedded defaults. Usage: scripts/bench-startup.sh [runs]
# "first" = empty data dir (generates TLS files, creates the database, migrates);
# "warm"  = existing data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=${CARGO_TARGET_DIR:-target}/release/certctl-server
[ -x "$bin" ] || cargo build --release --bin certctl-server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start_once() { # sets $ms (milliseconds to healthy) and $pid
    local data=$1
    local t0 t1
    t0=$(date +%s%N)
    CERTCTL_DATA_DIR=$data CERTCTL_SERVER_PORT=$port "$bin" >/dev/null 2>&1 &
    pid=$!
    until curl -sf --cacert "$data/tls/ca.crt" "https://127.0.0.1:$port/health" >/dev/null 2>&1; do
        sleep 0.002
    done
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
}

for kind in first warm; do
    times=()
    for i in $(seq "$runs"); do
        data="$work/data-$i"
        [ "$kind" = first ] && rm -rf "$data"
        start_once "$data"
        times+=("$ms")
        if [ "$kind" = warm ] && [ "$i" = 1 ]; then
            sleep 5
            rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
        fi
        kill -TERM "$pid"; wait "$pid" || true
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
    echo "$kind start to healthy (ms, sorted): $sorted"
done
echo "idle RSS after 5 s (KiB): $rss"
