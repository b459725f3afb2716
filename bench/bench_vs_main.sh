#!/usr/bin/env bash
# bench_vs_main.sh: issue 11's "twice as fast to the target", measured back to back on one
# machine: OLD_REV's `greenfed run` against this tree's `greenfed run` and (when this binary has
# it) `greenfed simulate`, on the issue's task: Fashion-MNIST, 10 clients, IID, cnn, 1 local
# epoch, batch 32, lr 0.05, momentum 0.9, target 0.90, seed 1 (examples/fashion_mnist/fl-iid.toml).
#
#   bench/bench_vs_main.sh OLD_REV [options] [-- EXTRA FLAGS FOR EVERY ARM]
#     --build DIR      this tree's build directory with apps/greenfed built (default build)
#     --old-dir DIR    worktree for OLD_REV (default ../greenfed-bench-old-<rev>); built in DIR/build
#     --out DIR        run directories and results (default /tmp/greenfed-bench-vs-main-<time>)
#     --reps N         interleaved repetitions old, new, simulate, old, new, ... (default 1)
#     --max-rounds N   cap the rounds (default 50; 1 for a smoke test of this script)
#     --arms LIST      comma-separated subset of old,new,simulate (default all three)
#     --jobs N         compile jobs for OLD_REV (default 2)
# OLD_REV is checked out with `git worktree add --detach` beside this tree and built with the
# same compiler and ccache (target greenfed only, tests and benchmarks off, its own defaults, so
# an OLD_REV from before cmake/Blas.cmake links the reference BLAS as it did then).
# Each arm runs under bench/run_meter.py: wall s launch to exit, CPU-s of every process
# (clients included), peak RSS of the coordinator and the largest client's. Prints a Markdown
# table (means over reps, and each rep in the CSV beside it) with the ratios new / old.
# Run it on an otherwise quiet machine; it records the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
(($#)) || usage
old_rev=$1; shift
build=build old_dir='' out='' reps=1 max_rounds=50 arms=old,new,simulate jobs=2
extra=()
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --old-dir) old_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --max-rounds) max_rounds=$2; shift 2 ;;
    --arms) arms=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage ;;
    *) echo "bench_vs_main.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$reps" =~ ^[1-9][0-9]*$ && "$max_rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench_vs_main.sh: --reps and --max-rounds must be positive integers" >&2; exit 2; }
old_sha=$(git rev-parse --verify "$old_rev^{commit}") || { echo "bench_vs_main.sh: no such revision: $old_rev" >&2; exit 2; }
short=${old_sha:0:10}
old_dir=${old_dir:-$here/../greenfed-bench-old-$short}
out=${out:-/tmp/greenfed-bench-vs-main-$(date -u +%Y%m%dT%H%M%S)}
new_bin=$here/$build/apps/greenfed
[[ -x "$new_bin" ]] || { echo "bench_vs_main.sh: $new_bin is not built (cmake --build $build --target greenfed)" >&2; exit 2; }
mkdir -p "$out"

# ---- the old binary, built beside this one ------------------------------------------------
if [[ ! -d "$old_dir" ]]; then
  git worktree add --detach "$old_dir" "$old_sha" >&2
else
  git -C "$old_dir" checkout --detach "$old_sha" >&2
fi
cmake -S "$old_dir" -B "$old_dir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGREENFED_BUILD_TESTS=OFF -DGREENFED_BUILD_BENCH=OFF \
  $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >"$out/old-cmake.log"
cmake --build "$old_dir/build" --target greenfed -j"$jobs" >"$out/old-build.log" 2>&1 ||
  { tail -30 "$out/old-build.log" >&2; echo "bench_vs_main.sh: building $old_rev failed" >&2; exit 1; }
old_bin=$old_dir/build/apps/greenfed

blas_of() { ldd "$1" | awk '$1 == "libblas.so.3" {print $3}'; }
has_simulate() { "$1" simulate --help >/dev/null 2>&1; }

# The task, spelled as flags every revision since the committed IID run knows.
task=(--clients 10 --partition iid --seed 1 --target-accuracy 0.90 --max-rounds "$max_rounds"
      --local-epochs 1 --batch-size 32 --lr 0.05 --momentum 0.9 --fraction-fit 1.0 --country WORLD)

run_arm() {  # arm rep
  local arm=$1 rep=$2 bin cmd dir
  dir=$out/$arm-$rep
  case "$arm" in
    old) bin=$old_bin; cmd=run ;;
    new) bin=$new_bin; cmd=run ;;
    simulate) bin=$new_bin; cmd=simulate ;;
  esac
  echo "bench_vs_main.sh: $arm rep $rep: $bin $cmd ... --run-dir $dir" >&2
  local meter
  meter=$(python3 "$here/bench/run_meter.py" -- "$bin" "$cmd" "${task[@]}" --run-dir "$dir" "${extra[@]}" 2>"$out/$arm-$rep.log")
  python3 - "$arm" "$rep" "$dir" "$meter" <<'EOF'
import json, sys, csv, os
arm, rep, d, meter = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
s = {}
try:
    with open(os.path.join(d, "summary.json")) as f:
        s = json.load(f)
except OSError:
    pass
rounds_s = []
try:
    with open(os.path.join(d, "rounds.csv")) as f:
        rounds_s = [float(r["round_s"]) for r in csv.DictReader(f) if r.get("round_s")]
except (OSError, KeyError, ValueError):
    pass
row = dict(arm=arm, rep=rep, rc=meter["rc"], wall_s=meter["wall_s"], cpu_s=meter["cpu_s"],
           coord_rss_mib=round((meter["top_peak_rss_kib"] or 0) / 1024, 1),
           client_rss_mib=round(meter["child_peak_rss_kib"] / 1024, 1) if meter["child_peak_rss_kib"] else "",
           rounds=s.get("rounds", ""), round_reached=s.get("round_reached", "") if s.get("round_reached") is not None else "",
           best_accuracy=s.get("best_accuracy", ""), mean_round_s=round(sum(rounds_s) / len(rounds_s), 3) if rounds_s else "",
           stop_reason=s.get("stop_reason", ""))
print(",".join(str(row[k]) for k in row))
EOF
}

IFS=, read -r -a arm_list <<<"$arms"
if [[ " ${arm_list[*]} " == *" simulate "* ]] && ! has_simulate "$new_bin"; then
  echo "bench_vs_main.sh: $new_bin has no 'simulate' command; leaving that arm out" >&2
  arm_list=("${arm_list[@]/simulate/}")
fi
csv=$out/results.csv
echo "arm,rep,rc,wall_s,cpu_s,coord_rss_mib,client_rss_mib,rounds,round_reached,best_accuracy,mean_round_s,stop_reason" >"$csv"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 1; r <= reps; ++r)); do
  for arm in "${arm_list[@]}"; do
    [[ -n "$arm" ]] || continue
    run_arm "$arm" "$r" >>"$csv"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$csv" "$old_rev ($short)" "$(git rev-parse --short=10 HEAD)$(git diff --quiet HEAD || echo '+dirty')" \
  "$(blas_of "$old_bin")" "$(blas_of "$new_bin")" "$load_before" "$load_after" "$(nproc)" <<'EOF'
import csv, sys
path, old, new, old_blas, new_blas, lb, la, cores = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def mean(arm, key):
    v = [float(r[key]) for r in rows if r["arm"] == arm and r[key] not in ("", "None")]
    return sum(v) / len(v) if v else None
arms = [a for a in ("old", "new", "simulate") if any(r["arm"] == a for r in rows)]
label = {"old": f"old `run` ({old})", "new": f"new `run` ({new})", "simulate": f"new `simulate` ({new})"}
keys = [("round_reached", "rounds to target", "{:.0f}"), ("rounds", "rounds run", "{:.0f}"),
        ("best_accuracy", "best accuracy", "{:.4f}"), ("mean_round_s", "mean round s", "{:.2f}"),
        ("wall_s", "wall s, launch to exit", "{:.1f}"), ("cpu_s", "CPU-s, all processes", "{:.1f}"),
        ("coord_rss_mib", "coordinator peak RSS MiB", "{:.0f}"), ("client_rss_mib", "client peak RSS MiB", "{:.0f}")]
print(f"Back to back on {cores} cores, {max(int(r['rep']) for r in rows)} rep(s), load average {lb} before, {la} after.")
print(f"BLAS: old {old_blas or '?'}, new {new_blas or '?'}.")
print()
print("| | " + " | ".join(label[a] for a in arms) + " | " + " | ".join(f"{a} / old" for a in arms if a != "old") + " |")
print("|---|" + "---|" * (len(arms) + len([a for a in arms if a != "old"])))
for key, name, fmt in keys:
    vals = [mean(a, key) for a in arms]
    cells = [fmt.format(v) if v is not None else "–" for v in vals]
    base = mean("old", key) if "old" in arms else None
    ratios = []
    for a in arms:
        if a == "old":
            continue
        v = mean(a, key)
        ratios.append(f"{v / base:.2f}" if v is not None and base else "–")
    print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
bad = [r for r in rows if r["rc"] != "0"]
if bad:
    print()
    print("non-zero exit: " + ", ".join(f"{r['arm']} rep {r['rep']} rc {r['rc']}" for r in bad))
EOF
echo "bench_vs_main.sh: per-rep figures in $csv, run directories and logs in $out" >&2
