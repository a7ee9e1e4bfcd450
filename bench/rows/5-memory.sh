# Row 5: memory. Peak RSS while serving MEM_DOWNLOADS concurrent downloads of
# the large NAR (narbor, and the tuned nginx: master and workers summed), and
# the resident memory per stored object with OBJECTS objects in the index.
# Row 6: restart, from `narbor serve` starting to the first served hit with
# OBJECTS stored objects (this was bench/restart.sh).

# Sum of the peak RSS (KiB) of a process and its children (nginx's workers).
tree_peak_kib() {
  local pid total=0
  for pid in "$1" $(pgrep -P "$1"); do
    total=$((total + $(peak_rss_kib "$pid")))
  done
  echo "$total"
}

row_5() {
  local run sys dir i pids
  target 5 "peak RSS MiB, $MEM_DOWNLOADS downloads" le 64
  for run in $(seq "$SLOW_RUNS"); do
    for sys in narbor nginx-tuned; do
      # The warm cache of rows 1-2, restarted so the peak is this run's own.
      start_system "$sys" "$UP_PORT"
      warm "$SYS_PORT" "$LARGE_NAR"
      dir=$BENCH_RESULTS/raw/row5-$sys-$run
      rm -rf "$dir"; mkdir -p "$dir"
      pids=()
      for i in $(seq "$MEM_DOWNLOADS"); do
        curl -s -o /dev/null --max-time 600 -w '%{http_code} %{size_download}\n' \
          "http://127.0.0.1:$SYS_PORT$LARGE_NAR" > "$dir/client-$i.txt" &
        pids+=($!)
      done
      wait "${pids[@]}"
      for i in $(seq "$MEM_DOWNLOADS"); do
        [ "$(cat "$dir/client-$i.txt")" = "200 $((LARGE_NAR_MB * 1048576))" ] || die "download $i from $sys: $(cat "$dir/client-$i.txt")"
      done
      record 5 "peak RSS MiB, $MEM_DOWNLOADS downloads" "$sys" \
        "$(awk -v k="$(tree_peak_kib "$SYS_PID")" 'BEGIN {printf "%.1f", k / 1024}')"
      stop_system
      fold_dir "$dir"
    done
  done
  # Resident memory with OBJECTS objects, against an empty store.
  seed_objects
  local empty full
  empty=$(narbor_first_hit_rss "$BENCH_WORK/run/empty-store" "")
  full=$(narbor_first_hit_rss "$OBJECTS_DIR/cache" "$(cat "$OBJECTS_DIR/key")")
  record 5 "RSS MiB, $OBJECTS objects" narbor "$(awk -v k="$full" 'BEGIN {printf "%.1f", k / 1024}')"
  record 5 "RSS bytes / object" narbor "$(awk -v f="$full" -v e="$empty" -v n="$OBJECTS" 'BEGIN {printf "%.0f", (f - e) * 1024 / n}')"
}

# A store with OBJECTS narinfo-sized documents (crates/narbor-store/examples/seed.rs), made once.
seed_objects() {
  OBJECTS_DIR=$BENCH_WORK/objects-$OBJECTS
  if [ ! -s "$OBJECTS_DIR/key" ]; then
    log "seeding $OBJECTS objects into $OBJECTS_DIR"
    rm -rf "$OBJECTS_DIR"; mkdir -p "$OBJECTS_DIR"
    "$SEED" "$OBJECTS_DIR/cache" "$OBJECTS" > "$OBJECTS_DIR/key.tmp"
    mv "$OBJECTS_DIR/key.tmp" "$OBJECTS_DIR/key"
  fi
  if [ -z "${OBJECTS_OPENED:-}" ]; then
    # One open first, not measured: a store written by an older narbor is
    # migrated (its metadata table built) at its first open.
    narbor_first_hit_rss "$OBJECTS_DIR/cache" "$(cat "$OBJECTS_DIR/key")" > /dev/null
    OBJECTS_OPENED=1
  fi
}

# narbor_first_hit_rss CACHE_DIR KEY: starts narbor --no-upstream on the store,
# waits for KEY to be served (or just for it to answer, with no key), prints
# its RSS in KiB; sets FIRST_HIT_MS to the time from start to that answer.
narbor_first_hit_rss() {
  local port start pid rss
  port=$(free_port)
  start=$(now_ns)
  spawn /dev/null "$NARBOR" serve --no-upstream --cache-dir "$1" --listen "127.0.0.1:$port"
  pid=$LAST_PID
  if [ -n "$2" ]; then
    local deadline=$((start + 60000000000))
    until [ "$(curl -s --max-time 2 -o /dev/null -w '%{http_code} %header{x-cache-status}' "http://127.0.0.1:$port/$2" 2>/dev/null)" = "200 HIT" ]; do
      [ "$(now_ns)" -lt "$deadline" ] || die "narbor did not serve $2 within 60 s"
      sleep 0.005
    done
  else
    wait_http "$port" /health
  fi
  FIRST_HIT_MS=$(ms_since "$start")
  rss=$(rss_kib "$pid")
  stop_pid "$pid"
  echo "$rss"
}

row_6() {
  target 6 "start to first hit ms, $OBJECTS objects" le 1000
  seed_objects
  local run
  for run in $(seq "$RUNS"); do
    # Not in $(...): FIRST_HIT_MS must reach this shell.
    narbor_first_hit_rss "$OBJECTS_DIR/cache" "$(cat "$OBJECTS_DIR/key")" > /dev/null
    record 6 "start to first hit ms, $OBJECTS objects" narbor "$FIRST_HIT_MS"
  done
}
