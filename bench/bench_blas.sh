#!/usr/bin/env bash
# bench_blas.sh: the BLAS lever of issue 11 for the CNN's linear layers (and the
# whole Fit), one process per measurement, interleaved A B C A B C ... REPS times.
#   A: the reference BLAS (Debian's libblas3/liblapack3, through LD_LIBRARY_PATH, which the
#      loader searches before the binary's RUNPATH)
#   B: the binary as built: OpenBLAS serial by default (cmake/Blas.cmake pins it)
#   C: OpenBLAS pthread (LD_LIBRARY_PATH=$OPENBLAS_PTHREAD_DIR, OPENBLAS_NUM_THREADS=1), only
#      when that directory exists (libopenblas0-pthread is not a dependency: never install it
#      for greenfed, its idle threads spin)
# Each process runs `bench_flops --section linear --section fit --reps 1`; the
# script prints per-process user/system CPU-s (getrusage, from the bench) and the
# fit's CPU-s and loss, then the median ratio B/A and C/A.
# usage: bench/bench_blas.sh [BUILD_DIR] [REPS] [EXAMPLES]
set -euo pipefail
build=${1:-build}
reps=${2:-3}
examples=${3:-1920}
reference=${REFERENCE_BLAS_DIRS:-/usr/lib/x86_64-linux-gnu/blas:/usr/lib/x86_64-linux-gnu/lapack}
pthread=${OPENBLAS_PTHREAD_DIR:-/usr/lib/x86_64-linux-gnu/openblas-pthread}
bench="$build/bench/bench_flops"
args=(--section linear --section fit --reps 1 --examples "$examples")
run() {  # label, then env assignments
  local label=$1; shift
  local out
  out=$(env "$@" "$bench" "${args[@]}")
  local lin fit proc
  lin=$(grep '^LINEAR' <<<"$out")
  fit=$(grep -E '^0 ' <<<"$out")
  proc=$(grep '^process user_s' <<<"$out")
  printf '%-16s fc1_us %s fc2_us %s | fit_cpu_s %s loss %s | %s\n' "$label" \
    "$(awk '{print $3}' <<<"$lin")" "$(awk '{print $5}' <<<"$lin")" \
    "$(awk '{print $3}' <<<"$fit")" "$(awk '{print $9}' <<<"$fit")" "$proc"
}
echo "bench_blas: $reps interleaved reps, fit over $examples images, 1 thread; as built: $(ldd "$bench" | awk '$1 == "libblas.so.3" {print $3}')"
for ((r = 0; r < reps; ++r)); do
  run reference OMP_NUM_THREADS=1 LD_LIBRARY_PATH="$reference"
  run as-built OMP_NUM_THREADS=1
  if [[ -d "$pthread" ]]; then
    run openblas-pthread OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 LD_LIBRARY_PATH="$pthread"
  fi
done | tee /dev/stderr | awk '
  { lab=$1; fc1[lab]=fc1[lab] " " $3; fit[lab]=fit[lab] " " $8 }
  function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; ++i) for (j = i + 1; j <= n; ++j) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END {
    for (l in fc1) printf "MEDIAN %-16s fc1_fwdbwd_us %s fit_cpu_s %s  ratio_to_reference fc1 %.3f fit %.3f\n", l, med(fc1[l]), med(fit[l]), med(fc1[l]) / med(fc1["reference"]), med(fit[l]) / med(fit["reference"])
  }'
