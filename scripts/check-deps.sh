#!/usr/bin/env bash
# Checks the dependency rule of docs/ARCHITECTURE.md: a folder under src/ may include only
# from folders of a lower tier (and itself). Prints each violation; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A tier=(
  [common]=0 [netns]=1 [sysfs]=1 [config]=1 [state]=1 [netlink]=2
  [inventory]=3 [attach]=3 [kube]=3 [cni]=3 [dra]=4 [nri]=4
)
bad=0
for dir in src/*/; do
  comp=$(basename "$dir")
  mine=${tier[$comp]:-}
  if [ -z "$mine" ]; then echo "unknown component src/$comp (add it to the rule)"; bad=1; continue; fi
  while IFS=: read -r file inc; do
    dep=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$inc")
    [ "$dep" = "$comp" ] && continue
    t=${tier[$dep]:-}
    [ -z "$t" ] && continue   # generated proto headers etc.
    if [ "$t" -ge "$mine" ]; then
      echo "$file: src/$comp (tier $mine) must not include $dep/ (tier $t)"
      bad=1
    fi
  done < <(grep -rHE '^#include "[a-z_]+/' "$dir" || true)
done
exit $bad
