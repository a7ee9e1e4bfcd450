# Row 7: publishing, `narbor push` of a 1 GiB closure to a local
# docker-registry against `nix copy --to file://...?compression=zstd` of the
# same closure, and the same with compression none. Both sign the narinfos
# with the same key. Every run starts from empty: a fresh registry (new
# storage, new process) for narbor, a fresh directory for nix copy.
#
# The closure's content is random bytes, which no compressor shrinks: the
# worst case for compression cost (all CPU, no bytes saved). A second closure
# of binaries (this machine's libraries and programs) shows the common case.


narbor_has() { "$NARBOR" "$1" --help > /dev/null 2>&1; }

# publish_closure KIND: builds (once) PUBLISH_PARTS paths of PUBLISH_PART_MB
# each, each referencing the one before, and a root referencing all; KIND is
# random (urandom bytes) or binaries (compressible). Prints the
# root's store path.
publish_closure() {
  local kind=$1 expr=$BENCH_WORK/publish-$1.nix gen
  if [ "$kind" = random ]; then
    gen='/usr/bin/head -c $bytes /dev/urandom > $out/data'
  else
    # This machine's shared libraries and programs, concatenated: what
    # closures mostly hold; zstd -3 shrinks it about 3.8 x.
    gen='/bin/cat /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/* 2>/dev/null | /usr/bin/head -c $bytes > $out/data'
  fi
  cat > "$expr" <<EOF
let
  part = i: prev: derivation {
    name = "bench-publish-$kind-\${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    bytes = toString ($PUBLISH_PART_MB * 1048576);
    inherit prev;
    args = [ "-c" ''
      /bin/mkdir \$out
      echo "\$prev" > \$out/deps
      $gen
    '' ];
  };
  parts = builtins.foldl' (acc: i: acc ++ [ (part i (if acc == [ ] then "" else builtins.elemAt acc (builtins.length acc - 1))) ]) [ ] (builtins.genList (i: i) $PUBLISH_PARTS);
in derivation {
  name = "bench-publish-$kind-root";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo \${toString parts} > \$out" ];
}
EOF
  nix-build "$expr" --no-out-link --quiet
}

# start_registry DIR [keep]: starts a docker-registry without auth with its
# storage in DIR/storage, emptied first unless "keep"; its address is in
# $REG_ADDR, its PID in $REG_PID.
REG_ADDR="" REG_PID=""
start_registry() {
  local dir=$1 keep=${2:-}
  [ -n "$keep" ] || rm -rf "$dir"
  mkdir -p "$dir/storage"
  REG_ADDR=127.0.0.1:$(free_port)
  cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REG_ADDR
  secret: narbor-bench-secret
EOF
  spawn "$dir/registry.log" docker-registry serve "$dir/config.yml"
  REG_PID=$LAST_PID
  local port=${REG_ADDR#*:}
  wait_http "$port" /v2/
}

# upload_blob PORT FILE DIGEST: the plainest upload of one blob (POST, then one
# PUT streaming the file), with curl.
upload_blob() {
  local loc
  loc=$(curl -sf -D - -o /dev/null -X POST "http://127.0.0.1:$1/v2/floor/blobs/uploads/" \
    | awk -F': ' 'tolower($1) == "location" {gsub(/\r/, "", $2); print $2}')
  case $loc in http*) ;; *) loc="http://127.0.0.1:$1$loc" ;; esac
  curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T "$2" "$loc&digest=sha256:$3"
}
export -f upload_blob

# registry_floor KIND COMP STORAGE OUT: uploads the NAR blobs (over 64 KiB) of
# a registry's storage into a fresh registry with curl, as many at a time as
# there are cores, and records the seconds it took: what docker-registry itself
# needs to take these bytes in, with no dumping, hashing or compressing; and the
# CPU time curl and the registry spent.
registry_floor() {
  local kind=$1 comp=$2 storage=$3 out=$4 t0 reg0 wall reg
  find "$storage/docker/registry/v2/blobs/sha256" -name data -size +64k \
    | awk -F/ '{print $0, $(NF - 1)}' > "$out"
  cut -d" " -f1 "$out" | xargs -r cat > /dev/null # into the page cache, as narbor had them
  start_registry "$BENCH_WORK/run/publish/floor"
  reg0=$(tree_cpu_ms "$REG_PID")
  t0=$(now_ns)
  run_timed "$out.log" "$out.cpu" xargs -r -P "$(nproc)" -n 2 bash -c 'upload_blob "$0" "$1" "$2"' "${REG_ADDR#*:}" < "$out" \
    || die "curl uploads into docker-registry failed: $(cat "$out.log")"
  wall=$(ms_since "$t0" | awk '{printf "%.2f", $1 / 1000}')
  reg=$(registry_cpu_since "$reg0")
  record 7 "push $kind $comp wall s" curl "$wall"
  record 7 "push $kind $comp CPU s, client" curl "$(cat "$out.cpu")"
  record 7 "push $kind $comp CPU s, registry" curl "$reg"
  rm -f "$out.log" "$out.cpu"
  [ "$(find "$BENCH_WORK/run/publish/floor/storage" -name data -size +64k | wc -l)" = "$(wc -l < "$out")" ] \
    || die "the registry does not hold every blob curl uploaded"
  stop_pid "$REG_PID"
  rm -rf "$BENCH_WORK/run/publish/floor"
}

# run_timed OUT CPU COMMAND...: runs COMMAND, its output into the file OUT,
# and writes the CPU seconds (user + system) it and its children used into the
# file CPU; fails as COMMAND does.
run_timed() {
  local out=$1 cpu=$2 TIMEFORMAT='%U %S' rc=0
  shift 2
  { time "$@" > "$out" 2>&1; } 2> "$cpu" || rc=$?
  awk '{printf "%.2f\n", $1 + $2}' "$cpu" > "$cpu.s" && mv "$cpu.s" "$cpu"
  return "$rc"
}

# registry_cpu_since MS: the registry's CPU seconds since tree_cpu_ms gave MS.
registry_cpu_since() {
  awk -v a="$1" -v b="$(tree_cpu_ms "$REG_PID")" 'BEGIN {printf "%.2f", (b - a) / 1000}'
}

# row7_nix_copy KIND COMP RUN ROOT DIR: nix copy into an empty directory.
row7_nix_copy() {
  local kind=$1 comp=$2 run=$3 root=$4 dir=$5 out t0
  rm -rf "$dir/file"
  out=$BENCH_RESULTS/raw/row7-$kind-$comp-nix-copy-$run.txt
  t0=$(now_ns)
  run_timed "$out" "$dir/cpu" nix copy --to "file://$dir/file?compression=$comp&secret-key=$dir/sk" "$root" \
    || die "nix copy failed: $(cat "$out")"
  record 7 "push $kind $comp wall s" nix-copy "$(ms_since "$t0" | awk '{printf "%.2f", $1 / 1000}')"
  record 7 "push $kind $comp CPU s, client" nix-copy "$(cat "$dir/cpu")"
  du -sb "$dir/file" >> "$out"
  rm -rf "$dir/file"
}

# row7_narbor KIND COMP RUN ROOT DIR: narbor push into an empty registry,
# whose storage stays for registry_floor.
row7_narbor() {
  local kind=$1 comp=$2 run=$3 root=$4 dir=$5 out t0 reg0 wall reg
  start_registry "$dir/registry"
  out=$BENCH_RESULTS/raw/row7-$kind-$comp-narbor-$run.txt
  reg0=$(tree_cpu_ms "$REG_PID")
  t0=$(now_ns)
  run_timed "$out" "$dir/cpu" "$NARBOR" push --to "oci+http://$REG_ADDR/cache" --key-file "$dir/sk" \
    --compression "$comp" --no-skip "$root" \
    || die "narbor push failed: $(cat "$out")"
  wall=$(ms_since "$t0" | awk '{printf "%.2f", $1 / 1000}')
  reg=$(registry_cpu_since "$reg0")
  record 7 "push $kind $comp wall s" narbor "$wall"
  record 7 "push $kind $comp CPU s, client" narbor "$(cat "$dir/cpu")"
  record 7 "push $kind $comp CPU s, registry" narbor "$reg"
  du -sb "$dir/registry/storage" >> "$out"
  stop_pid "$REG_PID"
}

row_7() {
  narbor_has push || { pending 7 "narbor push does not exist yet"; return; }
  local dir=$BENCH_WORK/run/publish kind root run comp
  mkdir -p "$dir"
  [ -f "$dir/sk" ] || "$NARBOR" keygen bench-publish-1 "$dir/sk" "$dir/pk" > /dev/null
  local kinds=(random)
  kinds+=(binaries)
  for kind in "${kinds[@]}"; do
    log "row 7: building the $kind closure ($PUBLISH_PARTS x $PUBLISH_PART_MB MiB)"
    root=$(publish_closure "$kind")
    for comp in zstd none; do
      target 7 "push $kind $comp wall s" ratio_le 0.7
      for run in $(seq "$PUSH_RUNS"); do
        # Both read the closure from the page cache, and they take turns going
        # first, so neither pays for the other's cold reads.
        nix-store -qR "$root" | while read -r p; do find "$p" -type f -exec cat {} +; done > /dev/null
        if [ $((run % 2)) = 1 ]; then
          row7_nix_copy "$kind" "$comp" "$run" "$root" "$dir"
          row7_narbor "$kind" "$comp" "$run" "$root" "$dir"
        else
          row7_narbor "$kind" "$comp" "$run" "$root" "$dir"
          row7_nix_copy "$kind" "$comp" "$run" "$root" "$dir"
        fi
        registry_floor "$kind" "$comp" "$dir/registry/storage" "$BENCH_RESULTS/raw/row7-$kind-$comp-curl-$run.txt"
        rm -rf "$dir/registry"
      done
    done
  done
}
