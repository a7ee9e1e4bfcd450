#!/usr/bin/env bash
# Request rate of narinfo HITs (the hot path the metrics instrument), and of
# /metrics itself, with wrk: N narinfos in the store, no upstream.
#
#   bench/hits.sh [SECONDS] [CONNECTIONS]
#   NARBOR_BIN=/path/to/other/narbor bench/hits.sh    # compare another build
#
# Prints requests per second for each; appends them to bench/results/hits.txt.
# Needs wrk and curl (Debian packages of the same names).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
cargo build --release -q -p narbor --bin narbor
cargo build --release -q -p narbor-store --example seed
bin=${NARBOR_BIN:-target/release/narbor}
work=${NARBOR_BENCH_DIR:-/tmp/narbor-bench-hits}
if [ ! -s "$work/key" ]; then
  rm -rf "$work"; mkdir -p "$work"
  target/release/examples/seed "$work/cache" 1000 > "$work/key"
fi
key=$(cat "$work/key")
port=$((20000 + RANDOM % 20000))
"$bin" serve --no-upstream --cache-dir "$work/cache" --listen "127.0.0.1:$port" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
until curl -s -o /dev/null "http://127.0.0.1:$port/health"; do sleep 0.01; done
rate() {
  wrk -t2 -c"$1" -d"${secs}s" "http://127.0.0.1:$port$2" | awk '/Requests\/sec/ {print $2}'
}
hit=$(rate "$conns" "/$key")
metrics=$(rate 4 /metrics)
line="$(date -u +%FT%TZ) bin=$bin narinfo-HIT=${hit}req/s (c=$conns) /metrics=${metrics}req/s (c=4) secs=$secs"
echo "$line"
mkdir -p bench/results
echo "$line" >> bench/results/hits.txt
