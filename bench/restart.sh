#!/usr/bin/env bash
# Restart time with many stored objects: from `narbor serve` starting to the
# first narinfo HIT served, with N (default 1,000,000) narinfos in the store.
#
#   bench/restart.sh [N] [RUNS]
#
# Prints the median and writes the raw runs to bench/results/restart-N.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
runs=${2:-5}
cargo build --release -q -p narbor --bin narbor
cargo build --release -q -p narbor-store --example seed
work=${NARBOR_BENCH_DIR:-/tmp/narbor-bench-restart-$n}
if [ ! -s "$work/key" ]; then
  rm -rf "$work"; mkdir -p "$work"
  target/release/examples/seed "$work/cache" "$n" > "$work/key"
fi
key=$(cat "$work/key")
port=$((20000 + RANDOM % 20000))
out=bench/results/restart-$n.txt
: > "$out"
for i in $(seq "$runs"); do
  start=$(date +%s%N)
  target/release/narbor serve --no-upstream --cache-dir "$work/cache" --listen "127.0.0.1:$port" 2>/dev/null &
  pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code} %header{x-cache-status}' "http://127.0.0.1:$port/$key" 2>/dev/null)" = "200 HIT" ]; do
    sleep 0.005
  done
  end=$(date +%s%N)
  kill "$pid"; wait "$pid" || true
  echo "$(( (end - start) / 1000000 ))" >> "$out"
done
index_mb=$(( $(stat -c %s "$work/cache/index.redb") / 1048576 ))
median=$(sort -n "$out" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "objects=$n runs=$runs index=${index_mb}MiB start-to-first-HIT median=${median}ms (all: $(tr '\n' ' ' < "$out"))"
