#!/usr/bin/env bash
# Sets up and runs greenfed's tests on Debian 12: installs the Debian packages it
# needs (idempotent), builds everything into build/, and runs ctest.
#   bash scripts/test.sh            # from the repository root
# Environment: GREENFED_BUILD_DIR (default build), GREENFED_JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GREENFED_BUILD_DIR:-build}
jobs=${GREENFED_JOBS:-$(nproc)}
bash scripts/install-deps.sh --all
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGREENFED_BUILD_TESTS=ON -DGREENFED_BUILD_BENCH=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
