#!/usr/bin/env bash
# Builds test/deploy/celeval (the CEL evaluator of the deploy tests) with cel-go and Go 1.23 from
# Debian, unpacked by scripts/fixtures.sh (fixtures cel-go and go-1.23; nothing is installed and
# nothing but Debian's archive is contacted, and only while the cache is cold). GOPATH mode: the
# Go sources of cel-go and its imports are the GOPATH, no module download.
#
#   test/deploy/celeval.sh [OUTDIR]     (default build/celeval; prints the binary's path)
#
# KND_FIXTURE_DIR overrides the fixture cache (default build/fixtures). Exit status 3: the
# fixtures could not be fetched (no archive reachable); anything else non-zero: a build error.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/celeval}
cache=${KND_FIXTURE_DIR:-$root/build/fixtures}
if ! "$root/scripts/fixtures.sh" --cache "$cache" go-1.23 cel-go >&2; then
  echo "celeval: the cel-go and go-1.23 fixtures could not be fetched into $cache" >&2
  exit 3
fi
cache=$(cd "$cache" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
goroot=$cache/go-1.23/usr/lib/go-1.23
bin=$out/celeval
src=$root/test/deploy/celeval
# Warm: nothing newer than the binary (its sources, this script, the fixture stamps).
if [ -x "$bin" ] && [ -z "$(find "$src" "$0" "$cache/go-1.23/.knd-fixture" \
    "$cache/cel-go/.knd-fixture" -newer "$bin" -print -quit)" ]; then
  echo "$bin"
  exit 0
fi
(cd "$src" && env -u GOFLAGS GO111MODULE=off GOROOT="$goroot" \
  GOPATH="$cache/cel-go/usr/share/gocode" GOCACHE="$out/gocache" GOTOOLCHAIN=local GOENV=off \
  GOPROXY=off GOTELEMETRY=off CGO_ENABLED=0 "$goroot/bin/go" build -p 2 -trimpath -o "$bin.tmp" .)
mv "$bin.tmp" "$bin"
echo "$bin"
