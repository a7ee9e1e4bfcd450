# Row 3: a cold storm. STORM_CLIENTS clients ask at once for the same uncached
# NAR, fetched from the throttled upstream: upstream bytes, time until the last
# client finishes (against one client alone), and the time to first byte of
# the last client to arrive. Every run starts the system with an empty cache.

# fetch_client OUT URL: one client; writes "code ttfb_s total_s bytes".
fetch_client() {
  curl -s -o /dev/null --max-time 600 -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n' "$2" > "$1"
}

check_clients() { # $@ = client output files; every one a whole 200
  local f want=$((STORM_NAR_MB * 1048576))
  for f in "$@"; do
    read -r code _ _ bytes < "$f"
    [ "$code" = 200 ] && [ "$bytes" = "$want" ] || die "a storm client got $code with $bytes bytes ($f)"
  done
}

row_3() {
  local run sys dir mark start i pids alone_ms storm_ms
  target 3 "storm: upstream bytes / object" eq 1.00
  target 3 "storm: last done / one alone" le 1.1
  for run in $(seq "$SLOW_RUNS"); do
    for sys in "${SYSTEMS[@]}"; do
      dir=$BENCH_RESULTS/raw/row3-$sys-$run
      rm -rf "$dir"; mkdir -p "$dir"
      # One client alone.
      start_system "$sys" "$UP_SLOW_PORT" fresh
      start=$(now_ns)
      fetch_client "$dir/alone.txt" "http://127.0.0.1:$SYS_PORT$STORM_NAR"
      alone_ms=$(ms_since "$start")
      record 3 "one client alone s" "$sys" "$(awk -v ms="$alone_ms" 'BEGIN {printf "%.2f", ms / 1000}')"
      check_clients "$dir/alone.txt"
      stop_system
      # The storm.
      start_system "$sys" "$UP_SLOW_PORT" fresh
      mark=$(upstream_log_mark)
      pids=()
      start=$(now_ns)
      for i in $(seq "$STORM_CLIENTS"); do
        fetch_client "$dir/client-$i.txt" "http://127.0.0.1:$SYS_PORT$STORM_NAR" &
        pids+=($!)
      done
      wait "${pids[@]}"
      storm_ms=$(ms_since "$start")
      record 3 "storm: last client done s" "$sys" "$(awk -v ms="$storm_ms" 'BEGIN {printf "%.2f", ms / 1000}')"
      record 3 "storm: last done / one alone" "$sys" "$(awk -v s="$storm_ms" -v a="$alone_ms" 'BEGIN {printf "%.2f", s / a}')"
      check_clients "$dir"/client-*.txt
      record 3 "storm: TTFB of the last to arrive ms" "$sys" "$(awk '{printf "%.1f", $2 * 1000}' "$dir/client-$STORM_CLIENTS.txt")"
      record 3 "storm: upstream bytes / object" "$sys" \
        "$(awk -v b="$(upstream_bytes_since "$mark")" -v o=$((STORM_NAR_MB * 1048576)) 'BEGIN {printf "%.2f", b / o}')"
      stop_system
      fold_dir "$dir"
    done
  done
}
