# Row 4: a fleet warming up. FLEET_CLIENTS Nix clients substitute the same
# closure at once (`nix copy --from URL --to local?root=DIR`) through a cold
# system in front of the throttled upstream: total wall time, upstream bytes.

row_4() {
  local run sys dir mark start i pids
  for run in $(seq "$SLOW_RUNS"); do
    for sys in "${SYSTEMS[@]}"; do
      dir=$BENCH_WORK/run/fleet
      rm -rf "$dir"; mkdir -p "$dir"
      start_system "$sys" "$UP_SLOW_PORT" fresh
      mark=$(upstream_log_mark)
      pids=()
      start=$(now_ns)
      for i in $(seq "$FLEET_CLIENTS"); do
        XDG_CACHE_HOME=$dir/xdg-$i timeout 900 nix copy --no-check-sigs \
          --from "http://127.0.0.1:$SYS_PORT" --to "local?root=$dir/client-$i" "$CLOSURE" \
          > "$BENCH_RESULTS/raw/row4-$sys-$run-client-$i.txt" 2>&1 &
        pids+=($!)
      done
      for i in "${pids[@]}"; do
        wait "$i" || die "a nix copy through $sys failed: see $BENCH_RESULTS/raw/row4-$sys-$run-client-*.txt"
      done
      for i in $(seq "$FLEET_CLIENTS"); do
        echo "== client $i"
        cat "$BENCH_RESULTS/raw/row4-$sys-$run-client-$i.txt"
        rm "$BENCH_RESULTS/raw/row4-$sys-$run-client-$i.txt"
      done > "$BENCH_RESULTS/raw/row4-$sys-$run.txt"
      record 4 "fleet wall s" "$sys" "$(awk -v ms="$(ms_since "$start")" 'BEGIN {printf "%.2f", ms / 1000}')"
      # The upstream's NARs include the synthetic ones, which no client asks
      # for: count against the closure's own NAR bytes.
      record 4 "fleet upstream bytes / closure" "$sys" \
        "$(awk -v b="$(upstream_bytes_since "$mark")" -v c="$(closure_nar_bytes)" 'BEGIN {printf "%.2f", b / c}')"
      stop_system
      for i in $(seq "$FLEET_CLIENTS"); do
        [ -e "$dir/client-$i/nix/store/$(basename "$CLOSURE")" ] || die "client $i through $sys has no closure"
      done
      rm -rf "$dir"
    done
  done
}

# The bytes of the NARs the closure's narinfos name.
closure_nar_bytes() {
  cat "$BENCH_WORK"/upstream/*.narinfo | awk '$1 == "FileSize:" {s += $2} END {print s}'
}
