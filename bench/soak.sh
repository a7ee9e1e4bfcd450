#!/usr/bin/env bash
# Soak: 1000 connections with a mixed workload for several minutes against
# narbor in front of a flaky upstream. Reports what clients saw (statuses by
# X-Cache-Status, socket errors) and narbor's RSS and open file descriptors
# over time. Not a test: run it by hand, read the report.
#
#   bench/soak.sh [DURATION_SECONDS] [CONNECTIONS]      (default 300 s, 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-300}
conns=${2:-1000}
for pair in wrk:wrk python3:python3 curl:curl; do
  command -v "${pair%%:*}" >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq "${pair#*:}" >/dev/null; }
  command -v "${pair%%:*}" >/dev/null || { echo "soak: missing ${pair#*:}" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"  # 1000 connections need more than the usual 1024
cargo build --release -q -p narbor --bin narbor
work=$(mktemp -d /tmp/narbor-soak.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
python3 bench/make_soak_cache.py "$work/up" 300 "$work/paths"
up_port=$((30000 + RANDOM % 10000)); port=$((up_port + 1))
python3 bench/flaky_upstream.py "$work/up" "$up_port" > "$work/upstream.log" 2>&1 &
up_pid=$!
until curl -s -o /dev/null "http://127.0.0.1:$up_port/nix-cache-info"; do sleep 0.1; done
target/release/narbor serve --listen "127.0.0.1:$port" --cache-dir "$work/cache" \
  --upstream "http://127.0.0.1:$up_port" --negative-ttl 10s --max-size 400M 2> "$work/narbor.log" &
pid=$!
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.1; done
echo "t_s,rss_kib,fds" > "$work/samples.csv"
(
  start=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    echo "$(( $(date +%s) - start )),$rss,$fds" >> "$work/samples.csv"
    sleep 2
  done
) &
SOAK_PATHS="$work/paths" wrk -t2 -c"$conns" -d"${duration}s" --timeout 15s -s bench/soak.lua \
  "http://127.0.0.1:$port" > "$work/wrk.txt" 2>&1 || true
healthy=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")
kill "$up_pid"; wait "$up_pid" 2>/dev/null || true
kill "$pid"; wait "$pid" 2>/dev/null || true
out=bench/results/soak-$(date -u +%Y%m%d-%H%M).txt
{
  echo "# soak: ${duration}s, $conns connections, $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
  echo "# command: bench/soak.sh $duration $conns"
  echo "## what clients saw (status/X-Cache-Status count)"
  grep -E '^(status|errors|requests)' "$work/wrk.txt" || cat "$work/wrk.txt"
  echo "## upstream"
  cat "$work/upstream.log"
  echo "## narbor after the soak: /health answered $healthy"
  echo "## narbor RSS and open fds (every 2 s): min / max / last"
  awk -F, 'NR>1 {if(min==""||$2<min)min=$2; if($2>max)max=$2; last=$2; if(fmin==""||$3<fmin)fmin=$3; if($3>fmax)fmax=$3; flast=$3}
    END {printf "rss_kib %d / %d / %d\nfds %d / %d / %d\n", min, max, last, fmin, fmax, flast}' "$work/samples.csv"
  echo "## samples"
  cat "$work/samples.csv"
  echo "## narbor warnings and errors (first 20)"
  grep -E 'WARN|ERROR' "$work/narbor.log" | sed 's/\x1b\[[0-9;]*m//g' | head -20 || true
  echo "## panics: $(grep -c panicked "$work/narbor.log" || true)"
} > "$out"
sed -n '1,/## samples/p' "$out"
echo "(full report: $out)"
