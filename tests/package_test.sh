#!/usr/bin/env bash
# package/out_of_tree: greenfed as an installed package, used by a project outside its tree.
#   1. `cmake --install BUILD --prefix TMP/prefix` into a fresh temporary prefix;
#   2. configures examples/custom_task against it alone (CMAKE_PREFIX_PATH=TMP/prefix; the
#      user and system package registries are off) and builds it with -Werror;
#   3. runs its custom_task_demo: a coordinator and 3 clients over CURVE on loopback, 2 rounds;
#   4. checks the run directory (config.json, rounds.csv with rounds 1 and 2, nodes.csv,
#      summary.json) and that the installed `greenfed report` reads it;
#   5. configures and builds tests/package_sim against the same prefix, which links
#      greenfed::sim and calls it (SplitEnergyByCpu), and runs it.
#   bash tests/package_test.sh SOURCE_DIR BUILD_DIR CMAKE CXX_COMPILER [COMPILER_LAUNCHER]
# The temporary directory is removed on success and kept (and named) on failure.
set -euo pipefail
src=$1 build=$2 cmake=$3 cxx=$4 launcher=${5:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-package.XXXXXX")
prefix=$work/prefix
ok=0
trap 'if ((ok)); then rm -rf -- "$work"; else echo "package_test.sh: FAILED; files kept in $work" >&2; fi' EXIT
say() { echo "package_test.sh: $*"; }
fail() { echo "package_test.sh: $*" >&2; exit 1; }

start=$SECONDS
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log"
say "installed $(grep -c '^-- Installing' "$work/install.log") files into the fresh prefix $prefix"
config=$(find "$prefix" -name greenfedConfig.cmake)
[[ -n $config ]] || fail "no greenfedConfig.cmake under $prefix"
[[ -x $prefix/bin/greenfed ]] || fail "no $prefix/bin/greenfed"
[[ -f $prefix/include/greenfed/task.h ]] || fail "no $prefix/include/greenfed/task.h"

args=(-S "$src/examples/custom_task" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix"
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUSTOM_TASK_WARNINGS_AS_ERRORS=ON
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
[[ -n $launcher ]] && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
"$cmake" "${args[@]}" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure failed"; }
found=$(sed -n 's/^greenfed_DIR:PATH=//p' "$work/build/CMakeCache.txt")
[[ $found == "$(dirname "$config")" ]] || fail "find_package(greenfed) found $found, not the fresh prefix $prefix"
say "configured examples/custom_task with greenfed_DIR=$found"
"$cmake" --build "$work/build" -j 2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build failed"; }
say "built custom_task_demo ($((SECONDS - start)) s so far)"

run=$work/run
"$work/build/custom_task_demo" --run-dir "$run" --clients 3 --rounds 2 >"$work/demo.out" 2>"$work/demo.err" ||
  { cat "$work/demo.out" "$work/demo.err"; fail "custom_task_demo exited with $?"; }
cat "$work/demo.out"
grep -q 'CURVE on tcp://127\.0\.0\.1:' "$work/demo.out" || fail "the demo did not run over CURVE on loopback"
for r in 1 2; do
  grep -q "round $r/2 | acc " "$work/demo.out" || fail "no progress line for round $r"
done
grep -q 'done after 2 rounds' "$work/demo.out" || fail "the demo did not complete 2 rounds"
for f in config.json rounds.csv nodes.csv summary.json; do
  [[ -s $run/$f ]] || fail "the run directory lacks $f"
done
rounds=$(tail -n +2 "$run/rounds.csv" | cut -d, -f1 | tr '\n' ' ')
[[ $rounds == "1 2 " ]] || fail "rounds.csv holds rounds '$rounds', expected '1 2 '"
for i in 0 1 2; do grep -q "client-$i" "$run/nodes.csv" || fail "nodes.csv has no row for client-$i"; done

"$prefix/bin/greenfed" report "$run" --out "$work/report" >"$work/report.log" 2>&1 ||
  { cat "$work/report.log"; fail "the installed greenfed report could not read the run directory"; }
[[ -s $work/report/report.md ]] || fail "greenfed report wrote no report.md"
say "the installed greenfed report read the run: $(grep -c . "$work/report/report.md") lines of report.md"
[[ -f $prefix/include/greenfed/sim/rapl_split.h ]] || fail "no $prefix/include/greenfed/sim/rapl_split.h"
sim_args=(-S "$src/tests/package_sim" -B "$work/build-sim" -DCMAKE_PREFIX_PATH="$prefix"
          -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo
          -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
[[ -n $launcher ]] && sim_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
"$cmake" "${sim_args[@]}" >"$work/configure-sim.log" 2>&1 || { cat "$work/configure-sim.log"; fail "configure of tests/package_sim failed"; }
"$cmake" --build "$work/build-sim" -j 2 >"$work/build-sim.log" 2>&1 || { cat "$work/build-sim.log"; fail "build of tests/package_sim (greenfed::sim) failed"; }
"$work/build-sim/sim_consumer" || fail "sim_consumer (greenfed::sim) exited with $?"
say "passed in $((SECONDS - start)) s against the installed prefix $prefix"
ok=1
