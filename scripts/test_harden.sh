#!/usr/bin/env bash
# Sanitizer + fuzz stage of scripts/test.sh (also runnable alone): a second build with clang,
# AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer (cmake/Sanitizers.cmake), of the
# unit tests and the fuzz targets only (no libtorch translation unit), then
#   1. greenfed_unit_tests under ASan+UBSan (any finding aborts: halt_on_error, no UBSan recover);
#   2. ctest fuzz/*: replays the committed seed corpus and crash reproducers (tests/fuzz/corpus);
#   3. each fuzzer for GREENFED_FUZZ_SECONDS (default 30), both at once, from the committed
#      corpus; new inputs go to a temporary directory, a crash fails the stage and its input is
#      kept in $build/fuzz-artifacts/.
#   bash scripts/test_harden.sh
# Environment: GREENFED_ASAN_BUILD_DIR (default build-asan), GREENFED_JOBS (default nproc),
# GREENFED_FUZZ_SECONDS (default 30; 0 skips step 3).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${GREENFED_ASAN_BUILD_DIR:-build-asan}
jobs=${GREENFED_JOBS:-$(nproc)}
fuzz_s=${GREENFED_FUZZ_SECONDS:-30}
targets=(decode round_machine)
start=$SECONDS

command -v clang++ >/dev/null || { echo "test_harden.sh: clang++ missing: bash scripts/install-deps.sh --all" >&2; exit 1; }
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGREENFED_SANITIZE=address,undefined -DGREENFED_BUILD_FUZZ=ON -DGREENFED_BUILD_BENCH=OFF -DGREENFED_BUILD_TESTS=ON
cmake --build "$build" -j "$jobs" --target greenfed_unit_tests "${targets[@]/#/greenfed_fuzz_}"
echo "test_harden.sh: built in $((SECONDS - start)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$build/tests/greenfed_unit_tests"
ctest --test-dir "$build" --output-on-failure -R '^fuzz/'

if ((fuzz_s > 0)); then
  artifacts=$build/fuzz-artifacts
  mkdir -p "$artifacts"
  work=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-fuzz.XXXXXX")
  trap 'rm -rf -- "$work"' EXIT
  pids=()
  for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    "$build/tests/fuzz/greenfed_fuzz_$t" -max_total_time="$fuzz_s" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$t-" "$work/$t" "tests/fuzz/corpus/$t" >"$work/$t.log" 2>&1 &
    pids+=($!)
  done
  failed=0
  for i in "${!targets[@]}"; do
    t=${targets[$i]}
    if wait "${pids[$i]}"; then
      echo "test_harden.sh: fuzz $t: $(grep -E '^stat::number_of_executed_units' "$work/$t.log" | awk '{print $2}') executions, no crash"
    else
      echo "test_harden.sh: fuzz $t FAILED; input kept in $artifacts/" >&2
      grep -E 'ERROR|SUMMARY|invariant violated|#[0-9]+ .* in greenfed|Test unit written' "$work/$t.log" | head -30 >&2
      failed=1
    fi
  done
  ((failed == 0)) || exit 1
fi
echo "test_harden.sh: sanitizer + fuzz stage passed in $((SECONDS - start)) s"
