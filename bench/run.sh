#!/usr/bin/env bash
# Runs every knd benchmark and writes bench/results/report.md and report.json
# (docs/performance.md explains the figures). Needs root: the benchmarks build throwaway
# network namespaces. Extra arguments go to bench.py (e.g. --smoke, --out DIR, --only attach).
#
#   bench/run.sh                      # full run, ~5 minutes on 2 cores
#   KND_BINARY_DIR=build-rel bench/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
build=${KND_BINARY_DIR:-$repo/build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" --target bench-all
export KND_BINARY_DIR="$build" PYTHONDONTWRITEBYTECODE=1
exec python3 "$here/bench.py" "$@"
