#!/usr/bin/env bash
# Sets up and runs greenfed's tests on Debian 12: installs the Debian packages it
# needs (idempotent), builds everything into build/, and runs ctest.
#   bash scripts/test.sh            # from the repository root
# Then the sanitizer + fuzz stage, scripts/test_harden.sh (clang, ASan+UBSan, libFuzzer) in
# build-asan/; GREENFED_SKIP_HARDEN=1 skips it.
# Environment: GREENFED_BUILD_DIR (default build), GREENFED_JOBS (default nproc); and those of
# scripts/test_harden.sh (GREENFED_ASAN_BUILD_DIR, GREENFED_FUZZ_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GREENFED_BUILD_DIR:-build}
jobs=${GREENFED_JOBS:-$(nproc)}
bash scripts/install-deps.sh --all
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGREENFED_BUILD_TESTS=ON -DGREENFED_BUILD_BENCH=ON
cmake --build "$build" -j "$jobs"
# libtorch's BLAS in the binary (cmake/Blas.cmake; the task/ tests check the binding).
echo "greenfed: libtorch's BLAS: $(ldd "$build/apps/greenfed" | awk '$1 == "libblas.so.3" {print $3}')"
rc=0
ctest --test-dir "$build" --output-on-failure -j "$jobs" || rc=$?
# ctest shows a passing test's output nowhere: print the Compose deployment's stages
# (engine, base image, image size, containers, peak memory, timings) into the log.
if [[ -f "$build/Testing/Temporary/LastTest.log" ]]; then
  echo "---- deploy/compose_e2e stages ----"
  grep -h '^compose_e2e.sh: ' "$build/Testing/Temporary/LastTest.log" || echo "(no compose_e2e output)"
fi
# The stage runs even when ctest failed, so that one CI run reports both.
if [[ "${GREENFED_SKIP_HARDEN:-0}" != 1 ]]; then
  bash scripts/test_harden.sh || rc=1
fi
exit "$rc"
