#!/usr/bin/env bash
# overhead_ratio.sh: issue 11's framework overhead of one federated run,
#   (FL run CPU-s) / (sum of isolated fit CPU-s + evaluation CPU-s), goal <= 1.05,
# with the denominator measured now, on this machine, by bench_flops --section fit (the same
# FashionMnistTask::Fit and Evaluate, 1 thread, alone in one process).
#
#   bench/overhead_ratio.sh RUN_DIR [--build DIR] [--reps N] [--examples N] [--fl-cpu-s X]
#     RUN_DIR       a finished `greenfed run` or `simulate` directory (rounds.csv, nodes.csv, config.json)
#     --build       build directory with bench/bench_flops (default build); build it with the same
#                   BLAS as the binary of the run (cmake/Blas.cmake), or the ratio mixes the two
#     --reps        fits measured, the median is used (default 3)
#     --examples    images per client shard (default: 60,000 / the run's number of clients, the IID
#                   and shards partitions' shard; give it for Dirichlet, where shards differ)
#     --fl-cpu-s    the numerator, e.g. bench/run_meter.py's cpu_s for the run (all processes,
#                   launch to exit); default: the sum of nodes.csv cpu_s (the metered intervals
#                   of every node, which leave out process start-up before the first record)
# Numerator and denominator count the same work: sum of clients_succeeded fits over rounds.csv
# (one local epoch each, as in the issue's task) and one central evaluation of the 10,000 test
# images per round. Federated evaluation by clients (fed_accuracy), if the run asked for it, is
# in the numerator only; the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
(($#)) || usage
run_dir=$1; shift
build=build reps=3 examples='' fl_cpu_s=''
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --examples) examples=$2; shift 2 ;;
    --fl-cpu-s) fl_cpu_s=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "overhead_ratio.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
for f in rounds.csv nodes.csv config.json; do
  [[ -f "$run_dir/$f" ]] || { echo "overhead_ratio.sh: $run_dir/$f is missing" >&2; exit 2; }
done
bench=$build/bench/bench_flops
[[ -x "$bench" ]] || { echo "overhead_ratio.sh: $bench is not built" >&2; exit 2; }
if [[ -z "$examples" ]]; then
  clients=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["partition"]["num_clients"])' "$run_dir/config.json")
  examples=$((60000 / clients))
fi
fit_out=$("$bench" --section fit --reps "$reps" --examples "$examples")
printf '%s\n' "$fit_out" >&2
python3 - "$run_dir" "$examples" "$fl_cpu_s" "$(ldd "$bench" | awk '$1 == "libblas.so.3" {print $3}')" <<EOF
import csv, statistics, sys
run_dir, examples, fl_cpu_s, blas = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
fit_lines = [l.split() for l in """$fit_out""".splitlines() if l[:1].isdigit()]
fit_cpu = statistics.median(float(l[2]) for l in fit_lines)
eval_cpu = statistics.median(float(l[6]) for l in fit_lines)
rounds = list(csv.DictReader(open(f"{run_dir}/rounds.csv")))
fits = sum(int(r["clients_succeeded"]) for r in rounds)
evals = len(rounds)
fed_eval = any(r.get("fed_accuracy") for r in rounds)
if fl_cpu_s:
    num, num_src = float(fl_cpu_s), "--fl-cpu-s"
else:
    # one row per node per round per energy source: take each (round, node) once
    best = {}
    for r in csv.DictReader(open(f"{run_dir}/nodes.csv")):
        k = (r["round"], r["node_id"])
        best[k] = max(best.get(k, 0.0), float(r["cpu_s"]))
    num, num_src = sum(best.values()), "sum of nodes.csv cpu_s"
den = fits * fit_cpu + evals * eval_cpu
print(f"run {run_dir}: {len(rounds)} rounds, {fits} fits of {examples} images, {evals} central evaluations")
print(f"isolated (bench_flops, {blas or 'BLAS ?'}): fit {fit_cpu:.3f} CPU-s, evaluation {eval_cpu:.3f} CPU-s (medians of {len(fit_lines)})")
print(f"FL run CPU-s ({num_src}): {num:.1f}")
print(f"sum of isolated fit CPU-s + evaluation CPU-s: {fits} x {fit_cpu:.3f} + {evals} x {eval_cpu:.3f} = {den:.1f}")
print(f"OVERHEAD {num / den:.3f}   (goal <= 1.05)")
if fed_eval:
    print("note: the run also evaluated on the clients (fed_accuracy); that work is in the numerator only")
EOF
