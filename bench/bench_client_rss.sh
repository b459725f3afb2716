#!/usr/bin/env bash
# Peak RSS (/usr/bin/time -v "Maximum resident set size") of one federated client: digits
# and fashion_mnist (cnn) clients of the greenfed binary, the greenfed binary doing nothing
# (`greenfed countries`: libtorch and the other libraries loaded), and optionally the digits
# client built without libtorch (bench/digits_client.cc). Each client is client 0 of 10 (the
# compare setting: ~150 digits or 6,000 Fashion-MNIST training images), 3 rounds, against a
# loopback coordinator. Not an assertion: prints one line each; the figures are recorded in
# docs/results/digits-2026-12-01/README.md. Works in a scratch directory it creates.
#   bash bench/bench_client_rss.sh build/apps/greenfed [build/bench/digits_client]
set -euo pipefail
G=$(realpath "$1")
lite=${2:+$(realpath "$2")}
set -- "$G" "$lite"
work=$(mktemp -d /tmp/greenfed-rss-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
peak() { grep "Maximum resident set size" "$1" | awk '{print $NF}'; }
/usr/bin/time -v "$G" countries > /dev/null 2> idle.time
echo "greenfed countries (binary loaded, no task): $(peak idle.time) KiB"
for task in digits fashion_mnist; do
  port=$((40000 + RANDOM % 20000))
  "$G" coordinator --task "$task" --bind "tcp://127.0.0.1:$port" --num-clients 10 --min-available-clients 1 \
      --min-fit-clients 1 --max-rounds 3 --target-accuracy 1.0 --run-dir "run-$task" --insecure --meter model \
      > "coord-$task.log" 2>&1 &
  cpid=$!
  /usr/bin/time -v "$G" client --connect "tcp://127.0.0.1:$port" --client-index 0 --insecure --meter model \
      > "client-$task.log" 2> "client-$task.time" || true
  wait "$cpid" || true
  echo "$task client (client-index 0 of 10, 3 rounds): $(peak client-$task.time) KiB; $(grep -o "trained on [0-9]* examples" client-$task.time | head -1)"
done
# The same digits client from a binary without libtorch (bench/digits_client.cc).
if [[ -n "${2:-}" ]]; then
  port=$((40000 + RANDOM % 20000))
  "$G" coordinator --task digits --bind "tcp://127.0.0.1:$port" --num-clients 10 --min-available-clients 1 \
      --min-fit-clients 1 --max-rounds 3 --target-accuracy 1.0 --run-dir run-digits-lite --insecure --meter model \
      > coord-digits-lite.log 2>&1 &
  cpid=$!
  /usr/bin/time -v "$2" "tcp://127.0.0.1:$port" 0 > client-digits-lite.log 2> client-digits-lite.time || true
  wait "$cpid" || true
  echo "digits client without libtorch ($2): $(peak client-digits-lite.time) KiB; $(grep -o "trained on [0-9]* examples" client-digits-lite.time | head -1)"
fi
