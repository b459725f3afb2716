#!/usr/bin/env bash
# Sets up and runs greenfed's main job on Debian 12: the Fashion-MNIST comparison
# (centralized baseline, FL IID, FL non-IID, then the emission report).
#   bash scripts/compare.sh              # full comparison to 90% top-1: results/<UTC time>-*
#   bash scripts/compare.sh --quick      # smoke run to 80% (57 s on a 2-core VM)
# Any flag of `greenfed compare` may follow (see `greenfed compare --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GREENFED_BUILD_DIR:-build}
bash scripts/install-deps.sh --all
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGREENFED_BUILD_TESTS=OFF -DGREENFED_BUILD_BENCH=OFF
cmake --build "$build" -j "$(nproc)" --target greenfed
exec "$build/apps/greenfed" compare --out results "$@"
