#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 15), coverage-guided
# by libFuzzer, on the stable toolchain: the same instrumentation cargo-fuzz
# uses, without its nightly-only sanitizer flags (narbor forbids unsafe code).
# A crash fails the run and leaves its input in fuzz/artifacts/TARGET/; turn it
# into a named regression test. fuzz/seeds/TARGET/, when there is one, holds
# inputs captured from the real tools (e.g. `.ls` files Nix wrote) that the
# run starts from besides its own corpus.
#
#   scripts/fuzz.sh            # 15 s per target (what CI runs)
#   scripts/fuzz.sh 600        # longer, locally
#   scripts/fuzz.sh 60 narinfo # one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
only=${2:-}
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$PWD/target/fuzz"
# An explicit --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --manifest-path fuzz/Cargo.toml --locked --release --bins --target "$triple"
targets=$(sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v '^narbor-fuzz$')
failed=0
for t in $targets; do
  [ -n "$only" ] && [ "$t" != "$only" ] && continue
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  corpora=("fuzz/corpus/$t")
  [ -d "fuzz/seeds/$t" ] && corpora+=("fuzz/seeds/$t")
  echo "fuzz: $t for ${seconds}s"
  if ! "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" "${corpora[@]}" > "fuzz/artifacts/$t.log" 2>&1; then
    echo "fuzz: $t FOUND A CRASH:" >&2
    tail -30 "fuzz/artifacts/$t.log" >&2
    failed=1
  else
    grep -E '^stat::number_of_executed_units' "fuzz/artifacts/$t.log" | sed "s/^/fuzz: $t: /"
  fi
done
exit $failed
