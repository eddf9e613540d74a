#!/usr/bin/env bash
# The main job: install dependencies, build knd, and run the local demo (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh build
KND_BINARY_DIR="$PWD/build" exec python3 scripts/demo.py
