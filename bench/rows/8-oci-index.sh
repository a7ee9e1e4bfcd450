# Row 8: narinfo hits through `serve --oci` with a 1M-entry index, against
# narbor's own store-backed hits (row 1's narbor, measured again here on the
# same document, turn about with the OCI server, so both see the same load);
# the refresh cost when nothing changed; load time and memory of the index.
#
# The index is written straight through narbor-oci's writer by the seed_index
# example (synthetic signed narinfos sharing one small blob, 1000 entries per
# fragment as narbor push writes them): pushing a million real paths would
# take hours. The registry's storage is kept under $BENCH_WORK between runs of
# the harness (seeding a million entries takes a minute or two).

row_8() {
  narbor_has push || { pending 8 "serve --oci (and narbor push to fill it) do not exist yet"; return; }
  local n=$OBJECTS dir=$BENCH_WORK/oci-index-$OBJECTS run out t0 port pid status narinfo
  local seeded=$dir/seeded
  if [ ! -f "$seeded" ]; then
    log "row 8: seeding an OCI index of $n entries"
    start_registry "$dir"
    t0=$(now_ns)
    "$SEED_INDEX" "oci+http://$REG_ADDR/cache" "$n" > "$dir/narinfo.tmp" 2> "$dir/seed.log" \
      || die "seed_index failed: $(tail -5 "$dir/seed.log")"
    log "row 8: seeded in $(( $(ms_since "$t0") / 1000 )) s"
    mv "$dir/narinfo.tmp" "$seeded"
  else
    start_registry "$dir" keep
  fi
  narinfo=$(cat "$seeded")

  # The OCI server: time until its index holds every entry, and its memory.
  port=$(free_port)
  t0=$(now_ns)
  spawn "$BENCH_WORK/run/oci-serve.log" "$NARBOR" serve --listen "127.0.0.1:$port" \
    --cache-dir "$BENCH_WORK/run/oci-cache" --oci "oci+http://$REG_ADDR/cache" --no-upstream --index-ttl 1h
  pid=$LAST_PID
  local deadline=$(( $(now_ns) + 600000000000 )) entries=0
  while [ "$(now_ns)" -lt "$deadline" ]; do
    entries=$(curl -s --max-time 5 "http://127.0.0.1:$port/_status" | jq -r '.oci.entries // 0' 2>/dev/null || echo 0)
    [ "$entries" = "$n" ] && break
    sleep 0.1
  done
  [ "$entries" = "$n" ] || die "serve --oci loaded $entries of $n entries in 600 s"
  record 8 "index load (start to $n entries) s" narbor "$(echo "$(ms_since "$t0")" | awk '{printf "%.2f", $1 / 1000}')"
  curl -s "http://127.0.0.1:$port/_status" > "$BENCH_RESULTS/raw/row8-status-loaded.json"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$narinfo")" = 200 ] \
    || die "serve --oci does not answer $narinfo"
  record 8 "RSS MiB, $n-entry index" narbor "$(rss_kib "$pid" | awk '{printf "%.1f", $1 / 1024}')"
  record 8 "RSS bytes / entry" narbor "$(rss_kib "$pid" | awk -v n="$n" '{printf "%.0f", $1 * 1024 / n}')"

  # The store-backed narbor of row 1, warm, for the same-load comparison. Its
  # upstream is the OCI server, so both serve the same document (row 1's
  # narinfo, of a closure's root with many references, is 2.5 times longer).
  start_system narbor "$port" fresh
  warm "$SYS_PORT" "$narinfo"
  target 8 "narinfo req/s" ratio_ge 1.0
  local sys
  for run in $(seq "$HIT_RUNS"); do
    for sys in $(turns "$run" narbor narbor-store); do
      if [ "$sys" = narbor ]; then
        out=$BENCH_RESULTS/raw/row8-oci-$run.txt
        run_wrk "$out" 64 "http://127.0.0.1:$port$narinfo" "$pid"
      else
        out=$BENCH_RESULTS/raw/row8-store-$run.txt
        run_wrk "$out" 64 "http://127.0.0.1:$SYS_PORT$narinfo" "$SYS_PID"
      fi
      record 8 "narinfo req/s" "$sys" "$(awk '/^Requests\/sec:/ {print $2}' "$out")"
      record 8 "server CPU µs / request" "$sys" "$CPU_US_PER_REQ"
      record 8 "narinfo p99 ms" "$sys" "$(wrk_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    done
  done
  record 8 "peak RSS MiB, index + wrk runs" narbor "$(peak_rss_kib "$pid" | awk '{printf "%.1f", $1 / 1024}')"
  stop_system

  # Refresh with nothing new: POST /_refresh, then what /_status says it cost.
  local before after
  for run in $(seq "$RUNS"); do
    before=$(curl -s "http://127.0.0.1:$port/_status" | jq '.oci.registry_requests')
    out=$BENCH_RESULTS/raw/row8-refresh-$run.json
    t0=$(now_ns)
    curl -s --max-time 120 -X POST "http://127.0.0.1:$port/_refresh" > "$out"
    record 8 "unchanged refresh, POST /_refresh ms" narbor "$(ms_since "$t0")"
    [ "$(jq -r '.changed' "$out")" = false ] || die "a refresh with nothing new changed the index: $(cat "$out")"
    status=$(curl -s "http://127.0.0.1:$port/_status")
    echo "$status" >> "$out"
    after=$(echo "$status" | jq '.oci.registry_requests')
    record 8 "unchanged refresh, last_refresh_ms" narbor "$(echo "$status" | jq '.oci.last_refresh_ms')"
    record 8 "unchanged refresh, registry requests" narbor "$((after - before))"
  done
  stop_pid "$pid"
  stop_pid "$REG_PID"
}
