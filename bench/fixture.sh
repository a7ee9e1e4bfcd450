# The upstream's content, made once per size setting and reused: a binary
# cache written by Nix itself (`nix copy --to file://...`) of a closure of
# random-content store paths, plus synthetic NARs (random bytes) named by their
# sha256, as crates/narbor/tests/e2e/serve.rs `put_nar` names them.
# Sourced by scripts/bench.sh; sets SMALL_NAR, LARGE_NAR, STORM_NAR (paths such
# as /nar/<hash>.nar), CLOSURE (a store path) and NARINFO (its /<hash>.narinfo).

fixture_nar() { # $1 = size in MiB; prints the path the upstream serves it at
  local tmp=$BENCH_WORK/upstream/nar/new.tmp hash
  head -c "$(( $1 * 1048576 ))" /dev/urandom > "$tmp"
  hash=$(nix-hash --type sha256 --flat --base32 "$tmp")
  mv "$tmp" "$BENCH_WORK/upstream/nar/$hash.nar"
  echo "/nar/$hash.nar"
}

fixture_closure() { # $1 = total MiB; prints the closure's root store path
  local mb=$1 expr=$BENCH_WORK/closure.nix
  # One big path (40 %), 4 medium (30 %), 10 small (25 %), 20 tiny (5 %):
  # roughly a program with its libraries. Builders have no PATH.
  cat > "$expr" <<EOF
let
  kib = $mb * 1024;
  part = name: bytes: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "/usr/bin/head -c \${toString bytes} /dev/urandom > \$out" ];
  };
  group = prefix: n: share: builtins.genList
    (i: part "bench-\${prefix}-\${toString i}" (kib * 1024 * share / 1000 / n)) n;
  parts = group "big" 1 400 ++ group "medium" 4 300 ++ group "small" 10 250 ++ group "tiny" 20 50;
in derivation {
  name = "bench-closure-${mb}m";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo \${toString parts} > \$out" ];
}
EOF
  nix-build "$expr" --no-out-link --quiet
}

make_fixture() {
  local env=$BENCH_WORK/fixture.env
  local want="$SMALL_NAR_MB $LARGE_NAR_MB $STORM_NAR_MB $CLOSURE_MB"
  if [ -f "$env" ] && [ "$(cat "$BENCH_WORK/fixture.sizes" 2>/dev/null)" = "$want" ]; then
    # shellcheck disable=SC1090
    . "$env"
    return
  fi
  log "making the fixture in $BENCH_WORK (NARs of $SMALL_NAR_MB, $LARGE_NAR_MB, $STORM_NAR_MB MiB; a $CLOSURE_MB MiB closure)"
  rm -rf "$BENCH_WORK/upstream"
  mkdir -p "$BENCH_WORK/upstream/nar"
  chmod 755 "$BENCH_WORK" "$BENCH_WORK/upstream" "$BENCH_WORK/upstream/nar"
  local closure
  closure=$(fixture_closure "$CLOSURE_MB")
  nix copy --to "file://$BENCH_WORK/upstream?compression=none" "$closure"
  chmod -R a+rX "$BENCH_WORK/upstream"
  {
    echo "SMALL_NAR=$(fixture_nar "$SMALL_NAR_MB")"
    echo "LARGE_NAR=$(fixture_nar "$LARGE_NAR_MB")"
    echo "STORM_NAR=$(fixture_nar "$STORM_NAR_MB")"
    echo "CLOSURE=$closure"
    echo "NARINFO=/$(basename "$closure" | cut -c1-32).narinfo"
  } > "$env.tmp"
  chmod -R a+rX "$BENCH_WORK/upstream"
  mv "$env.tmp" "$env"
  echo "$want" > "$BENCH_WORK/fixture.sizes"
  # shellcheck disable=SC1090
  . "$env"
}
