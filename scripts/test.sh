#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, build, run every ctest label
# (unit, privileged, e2e, runtime, and hw: the hardware lab, a QEMU guest with SR-IOV NICs that
# runs the vm, privileged and e2e labels on Debian's 6.12 kernel), run every fuzz target briefly
# (clang, libFuzzer: KND_FUZZ_SECONDS per target, default 30; 0 skips; docs/fuzzing.md), then
# build again with ASan+UBSan and run the suite there too, without the lab (sanitized binaries
# under software emulation would take most of an hour).
# Privileged and e2e tests need root; without it they skip themselves visibly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/fixtures.sh  # containerd 2.1 and 1.7, the 6.12 kernel, QEMU 10, cel-go, Go 1.23 and DPDK, into build/fixtures

scripts/build.sh build
(cd build && ctest --output-on-failure --timeout 600)

if [ "${KND_FUZZ_SECONDS:-30}" != 0 ]; then
  scripts/fuzz.sh "${KND_FUZZ_SECONDS:-30}"
fi

if [ "${KND_SKIP_ASAN:-0}" != 1 ]; then
  scripts/build.sh build-asan -DKND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure --timeout 900 -LE '^hw$')
fi
