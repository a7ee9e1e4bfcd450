#!/usr/bin/env bash
# Benchmarks narbor side by side with nginx proxy_cache (as the NixOS
# pull-through module configures it, and tuned) on this machine, and writes
# BENCHMARKS.md with the medians and ratios; raw outputs go to bench/results/.
# Not part of the test suite. On a fresh Debian machine, as root, it first
# installs what it needs (nginx, wrk, the Nix client, docker-registry, jq).
#
#   scripts/bench.sh              # every row (about 30-40 minutes)
#   scripts/bench.sh --rows "1 6" # some rows only
#   scripts/bench.sh --smoke      # tiny sizes, one run each (about 25 s once the
#                                 # fixture exists): checks the harness works
#
# Only a full run (every row, full sizes) writes BENCHMARKS.md and
# bench/results/; --rows and --smoke write to $BENCH_WORK/results.
#
# Fixtures (random NARs, a Nix-built closure in a Nix-written cache, a store of
# many objects) are made once under $BENCH_WORK (default /tmp/narbor-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke= rows="1 2 3 4 5 6 7 8"
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --rows) rows=$2; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "scripts/bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# command -> Debian package that provides it
# shellcheck source=scripts/lib/require.sh
. scripts/lib/require.sh
require scripts/bench.sh \
  "nginx:nginx" \
  "wrk:wrk" \
  "curl:curl" \
  "ss:iproute2" \
  "setpriv:util-linux" \
  "nix-store:nix-bin" \
  "docker-registry:docker-registry" \
  "jq:jq"
if [ "$(id -u)" != 0 ]; then
  # Row 4 substitutes into chroot stores and the fixture builds into /nix/store.
  echo "scripts/bench.sh: runs Nix in single-user mode and must run as root." >&2
  exit 1
fi

full=1
[ -z "$smoke" ] && [ "$rows" = "1 2 3 4 5 6 7 8" ] || full=
if [ -n "$smoke" ]; then BENCH_WORK=${BENCH_WORK:-/tmp/narbor-bench-smoke}; fi
if [ -z "$full" ]; then BENCH_RESULTS=${BENCH_WORK:-/tmp/narbor-bench}/results; fi
. bench/lib.sh
for f in bench/fixture.sh bench/rows/*.sh; do . "$f"; done
if [ -n "$smoke" ]; then
  RUNS=1 HIT_RUNS=1 SLOW_RUNS=1 PUSH_RUNS=1 DURATION=1
  SMALL_NAR_MB=2 LARGE_NAR_MB=16 STORM_NAR_MB=8 STORM_CLIENTS=8 UPSTREAM_RATE=16m
  FLEET_CLIENTS=2 CLOSURE_MB=8 MEM_DOWNLOADS=8 OBJECTS=10000
  PUBLISH_PART_MB=2
fi

log "building narbor (release)"
cargo build --release -q --locked -p narbor --bin narbor
cargo build --release -q --locked -p narbor-store --example seed
cargo build --release -q --locked -p narbor-oci --example seed_index
# Copies, so that a rebuild while the benchmark runs cannot change what it measures.
mkdir -p "$BENCH_WORK/bin"
cp target/release/narbor target/release/examples/seed target/release/examples/seed_index "$BENCH_WORK/bin/"
NARBOR=$BENCH_WORK/bin/narbor SEED=$BENCH_WORK/bin/seed SEED_INDEX=$BENCH_WORK/bin/seed_index

mkdir -p "$BENCH_WORK/run"
rm -rf "$BENCH_RESULTS/raw" "$BENCH_RESULTS"/{summary,targets,pending}.tsv
mkdir -p "$BENCH_RESULTS/raw"
: > "$BENCH_RESULTS/summary.tsv"; : > "$BENCH_RESULTS/targets.tsv"; : > "$BENCH_RESULTS/pending.tsv"
trap stop_all EXIT
trap 'exit 130' INT TERM

command_line="scripts/bench.sh${smoke:+ --smoke}"
[ -n "$full" ] || [ "$rows" = "1 2 3 4 5 6 7 8" ] || command_line+=" --rows \"$rows\""
{
  echo "command: $command_line"
  echo "cores: $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)$(page_reporting)"
  echo "kernel: $(uname -sr)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'), nix: $(nix --version | awk '{print $3}')"
  echo "narbor: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (with uncommitted changes)')"
  echo "started: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$BENCH_RESULTS/machine.txt"
started=$(now_ns)

make_fixture
start_upstream

has_row() { [[ " $rows " == *" $1 "* ]]; }

declare -A WARM_PORT=() WARM_PID=()
if has_row 1 || has_row 2 || has_row 5; then
  for sys in "${SYSTEMS[@]}"; do
    start_system "$sys" "$UP_PORT" fresh
    WARM_PORT[$sys]=$SYS_PORT
    WARM_PID[$sys]=$SYS_PID
    for path in "$NARINFO" "$SMALL_NAR" "$LARGE_NAR"; do warm "$SYS_PORT" "$path"; done
  done
  WARM_PORT[static]=$UP_PORT
  if has_row 1; then row_1; fi
  if has_row 2; then row_2; fi
  for sys in "${SYSTEMS[@]}"; do stop_pid "${WARM_PID[$sys]}"; done
fi
for row in 3 4 5 6 7 8; do
  if has_row "$row"; then "row_$row"; fi
done

{
  echo "finished: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed: $(( $(ms_since "$started") / 1000 )) s"
} >> "$BENCH_RESULTS/machine.txt"
settings="runs $HIT_RUNS (request-rate rows 1, 8) / $RUNS (other quick rows) / $SLOW_RUNS (cold rows) / $PUSH_RUNS (row 7), wrk $DURATION s per run; NARs of $SMALL_NAR_MB and $LARGE_NAR_MB MiB; storm $STORM_CLIENTS clients, $STORM_NAR_MB MiB NAR; upstream limit_rate $UPSTREAM_RATE per connection; fleet $FLEET_CLIENTS clients, $CLOSURE_MB MiB closure; $MEM_DOWNLOADS downloads; $OBJECTS objects; publish closure $PUBLISH_PARTS x $PUBLISH_PART_MB MiB"
echo "settings: $settings" >> "$BENCH_RESULTS/machine.txt"
if [ -n "$full" ]; then
  bench/report.sh "$BENCH_RESULTS" > BENCHMARKS.md
  log "wrote BENCHMARKS.md"
else
  bench/report.sh "$BENCH_RESULTS" > "$BENCH_RESULTS/BENCHMARKS.md"
  log "done in $(( $(ms_since "$started") / 1000 )) s: $BENCH_RESULTS/BENCHMARKS.md"
fi
