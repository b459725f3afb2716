#!/usr/bin/env bash
# Coordinator memory over a long run: VmRSS / VmHWM (/proc/PID/status) at round 1 and at the
# last round of a >= 30-round federated run on synthetic data with a few local clients, and
# whether VmRSS stayed flat (within 5%). Drives tests/churn_soak.py twice: without churn, and
# with clients SIGKILLed and restarted (rejoins under new connections). Not an assertion: it
# prints one line per mode; docs/benchmarks.md records measured figures.
#   bash bench/bench_rss.sh [BUILD_DIR] [ROUNDS]     (defaults: build 40)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-40}
for bin in "$build/apps/greenfed" "$build/tests/greenfed_make_synthetic"; do
  [[ -x "$bin" ]] || { echo "bench_rss.sh: $bin is missing; build targets greenfed greenfed_make_synthetic" >&2; exit 2; }
done
common=(--greenfed "$build/apps/greenfed" --make-synthetic "$build/tests/greenfed_make_synthetic"
        --rounds "$rounds" --rss --timeout-s 300)
for mode in steady churn; do
  if [[ $mode == steady ]]; then
    out=$(python3 tests/churn_soak.py "${common[@]}" --clients 3 --no-churn 2>&1) || { echo "$out" >&2; exit 1; }
  else
    out=$(python3 tests/churn_soak.py "${common[@]}" --clients 4 --max-kills 10 --permanent-kills 0 2>&1) ||
      { echo "$out" >&2; exit 1; }
  fi
  echo "bench_rss $mode ($rounds rounds): $(grep '^rss:' <<<"$out" | sed 's/^rss: //')"
done
