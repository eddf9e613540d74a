#!/usr/bin/env bash
# Style and static checks on the project's own C/C++ sources.
#   scripts/lint.sh format        clang-format --dry-run -Werror on every tracked file (fast; a ctest)
#   scripts/lint.sh fix           clang-format -i on every tracked file
#   scripts/lint.sh tidy [build]  clang-tidy (.clang-tidy) on every tracked .cc, using the build
#                                 dir's compile_commands.json (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-format}
files() { git ls-files -- "$@" 2>/dev/null || find src cmd test bench -name "$1"; }
case "$mode" in
  format)
    bad=()
    while IFS= read -r f; do
      clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
    done < <(files '*.cc' '*.h' '*.c')
    if ((${#bad[@]})); then
      printf 'not clang-formatted (fix: clang-format -i FILE):\n' >&2
      printf '  %s\n' "${bad[@]}" >&2
      exit 1
    fi
    echo "clang-format: all files clean"
    ;;
  fix)
    files '*.cc' '*.h' '*.c' | xargs clang-format -i
    echo "clang-format: files formatted in place"
    ;;
  tidy)
    build=${2:-build}
    [ -f "$build/compile_commands.json" ] || { echo "no $build/compile_commands.json; run scripts/build.sh $build" >&2; exit 2; }
    files '*.cc' | grep -v '^bench/' | xargs -P"${KND_JOBS:-2}" -n4 clang-tidy -p "$build" --quiet 2>&1 \
      | grep -E '(warning|error):' | sort -u | tee /tmp/knd-tidy.txt || true
    if [ -s /tmp/knd-tidy.txt ]; then echo "clang-tidy: findings above" >&2; exit 1; fi
    echo "clang-tidy: clean"
    ;;
  *) echo "usage: $0 format|fix|tidy [build-dir]" >&2; exit 2 ;;
esac
