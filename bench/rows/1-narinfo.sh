# Row 1: warm narinfo hits, 64 connections: requests/s and p99 latency.
# Row 2: warm NAR hits (a small and a large NAR), 16 connections: bytes/s.
# Both run against the systems started warm by warm_systems (scripts/bench.sh).

# wrk's latency with its unit -> milliseconds.
wrk_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
    if (f < 0) exit 1
    printf "%.3f\n", n * f
  }'
}
# wrk's Transfer/sec with its unit (1024-based) -> MiB/s.
wrk_mib() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    f = (u == "B") ? 1 / 1048576 : (u == "KB") ? 1 / 1024 : (u == "MB") ? 1 : (u == "GB") ? 1024 : -1
    if (f < 0) exit 1
    printf "%.1f\n", n * f
  }'
}

# run_wrk OUT CONNECTIONS URL [PID]: wrk in its own process, bounded by
# DURATION. With the server's PID, sets CPU_US_PER_REQ: the server's CPU time
# (all its processes) per completed request, which the machine's noise moves
# far less than throughput.
run_wrk() {
  local cpu0= TIMEFORMAT='wrk-cpu-seconds %U %S'
  [ -z "${4:-}" ] || cpu0=$(tree_cpu_ms "$4")
  { time timeout $((DURATION + 30)) wrk -t2 -c"$2" -d"${DURATION}s" --timeout 10s --latency "$3" > "$1" 2>&1; } 2>> "$1" \
    || die "wrk failed: $(cat "$1")"
  if grep -q "Non-2xx" "$1"; then die "non-2xx answers in $1"; fi
  if [ -n "$cpu0" ]; then
    CPU_US_PER_REQ=$(awk -v c=$(($(tree_cpu_ms "$4") - cpu0)) '/ requests in / {printf "%.1f", c * 1000 / $1}' "$1")
    # The load generator's own CPU time per request: with the server's, what
    # one request costs the machine.
    WRK_US_PER_REQ=$(awk '/ requests in / {r = $1} /^wrk-cpu-seconds/ {c = $2 + $3} END {printf "%.1f", c * 1e6 / r}' "$1")
  fi
}

row_1() {
  local run sys out
  target 1 "narinfo req/s" ratio_ge 1.5
  for run in $(seq "$HIT_RUNS"); do
    for sys in $(turns "$run" "${SYSTEMS[@]}"); do
      out=$BENCH_RESULTS/raw/row1-$sys-$run.txt
      run_wrk "$out" 64 "http://127.0.0.1:${WARM_PORT[$sys]}$NARINFO" "${WARM_PID[$sys]}"
      record 1 "narinfo req/s" "$sys" "$(awk '/^Requests\/sec:/ {print $2}' "$out")"
      record 1 "server CPU µs / request" "$sys" "$CPU_US_PER_REQ"
      record 1 "wrk CPU µs / request" "$sys" "$WRK_US_PER_REQ"
      record 1 "narinfo p99 ms" "$sys" "$(wrk_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    done
  done
}

row_2() {
  local run sys out which path
  target 2 "small NAR MiB/s" ratio_ge 1.0
  target 2 "large NAR MiB/s" ratio_ge 1.0
  for which in small large; do
    if [ "$which" = small ]; then path=$SMALL_NAR; else path=$LARGE_NAR; fi
    for run in $(seq "$RUNS"); do
      # "static": the upstream nginx serving the file itself, no proxy: the
      # most this machine's loopback, wrk and page cache allow.
      for sys in $(turns "$run" "${SYSTEMS[@]}" static); do
        out=$BENCH_RESULTS/raw/row2-$which-$sys-$run.txt
        run_wrk "$out" 16 "http://127.0.0.1:${WARM_PORT[$sys]}$path"
        record 2 "$which NAR MiB/s" "$sys" "$(wrk_mib "$(awk '/^Transfer\/sec:/ {print $2}' "$out")")"
      done
    done
  done
}
