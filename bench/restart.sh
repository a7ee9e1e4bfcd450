#!/usr/bin/env bash
# Restart time with many stored objects: row 6 of scripts/bench.sh, alone.
#
#   bench/restart.sh [N]     # N stored objects, default 1,000,000
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_OBJECTS=${1:-1000000} exec scripts/bench.sh --rows 6
