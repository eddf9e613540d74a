#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang with ASan+UBSan) into build-fuzz and runs each
# for a while on a copy of its seed corpus. Usage: scripts/fuzz.sh [seconds-per-target] [target...]
# (default 60 s, every target, two at a time). A crash, leak, timeout or failed property stops
# the run with the reproducer under build-fuzz/findings/<target>/; see docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
# -O1 with line tables, as OSS-Fuzz builds: quick to compile, and stack traces name lines.
flags="-O1 -gline-tables-only"
if [ ! -f build-fuzz/build.ninja ] ||
   ! grep -qxF "CMAKE_CXX_FLAGS:STRING=$flags" build-fuzz/CMakeCache.txt; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_C_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DKND_FUZZ=ON -DKND_WERROR=OFF >/dev/null
fi
ninja -C build-fuzz -j"${KND_JOBS:-2}" fuzzers

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
fi

run_one() {
  local t=$1 seconds=$2
  local work=build-fuzz/corpus/$t findings=build-fuzz/findings/$t
  mkdir -p "$work" "$findings"
  # New inputs go to the build tree's corpus; the repository's seeds are only read.
  if build-fuzz/fuzz/"$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
       "$work" "fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "build-fuzz/$t.log" |
      grep -o '[0-9]*$') runs in ${seconds}s, no finding"
  else
    echo "fuzz: $t FAILED; reproducer in $findings/, log build-fuzz/$t.log:" >&2
    grep -E "ERROR|SUMMARY|==[0-9]+==|abort|Test unit written" "build-fuzz/$t.log" | head -20 >&2
    return 1
  fi
}
export -f run_one
printf '%s\n' "${targets[@]}" | xargs -P2 -I{} bash -c 'run_one {} '"$seconds"
