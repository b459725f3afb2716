#!/usr/bin/env bash
# Peak resident memory of a coordinator while SENDERS peers each send one multipart message of
# FRAMES frames x MIB MiB (each frame under the 64 MiB ZMQ_MAXMSGSIZE, together far over the
# 64 MiB message limit), measured with /usr/bin/time -v. The attack: greenfed_oversized_sender.
#
# Usage: scripts/oversized_rss.sh [--binary GREENFED] [--sender PATH] [--senders N] [--frames F]
#          [--mib M] [--mode insecure|curve-listed|curve-stranger]
#   insecure        coordinator --insecure, plaintext attacker
#   curve-listed    CURVE coordinator, the attacker holds an allow-listed key
#   curve-stranger  CURVE coordinator, plaintext attacker (its handshake fails)
# Prints one line: mode, senders, peak_rss_kb, whether the coordinator survived the attack and
# wrote summary.json. Run it under `ulimit -v KB` to see the behaviour under a memory cap. Needs
# build/tests/greenfed_make_synthetic for the coordinator's data. Memory: up to ~(F x M MiB) per
# sender, twice that on builds before the bounded receive path; mind the machine.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
bin=$repo/build/apps/greenfed
sender=$repo/build/tests/greenfed_oversized_sender
synth=$repo/build/tests/greenfed_make_synthetic
senders=1 frames=17 mib=63 mode=insecure
while (($#)); do
  case "$1" in
    --binary) bin=$2; shift ;;
    --sender) sender=$2; shift ;;
    --senders) senders=$2; shift ;;
    --frames) frames=$2; shift ;;
    --mib) mib=$2; shift ;;
    --mode) mode=$2; shift ;;
    *) echo "oversized_rss.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[[ -x /usr/bin/time ]] || { echo "oversized_rss.sh: needs /usr/bin/time (package time)" >&2; exit 2; }
w=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-oversized.XXXXXX")
trap 'rm -rf -- "$w"' EXIT
"$synth" "$w/data" --train 600 --test 100 >/dev/null
security=()
case "$mode" in
  insecure) security=(--insecure) ;;
  curve-listed|curve-stranger)
    "$bin" keygen --out "$w/keys" --name coordinator >/dev/null
    "$bin" keygen --out "$w/keys/clients" --name attacker >/dev/null
    security=(--secret-key "$w/keys/coordinator.key" --allow-clients "$w/keys/clients")
    if [[ "$mode" == curve-listed ]]; then
      export GREENFED_ATTACK_SERVER_KEY=$(cat "$w/keys/coordinator.pub")
      export GREENFED_ATTACK_PUBLIC_KEY=$(awk '/^public-key/ {print $3}' "$w/keys/clients/attacker.key")
      export GREENFED_ATTACK_SECRET_KEY=$(awk '/^secret-key/ {print $3}' "$w/keys/clients/attacker.key")
    fi ;;
  *) echo "oversized_rss.sh: --mode must be insecure, curve-listed or curve-stranger" >&2; exit 2 ;;
esac
port=$((30000 + RANDOM % 20000))
# An old binary without --insecure takes none of the security flags: plaintext is its only mode.
if [[ "$mode" == insecure ]] && ! "$bin" coordinator --help | grep -q -- "--insecure"; then security=(); fi
/usr/bin/time -v "$bin" coordinator --bind "tcp://127.0.0.1:$port" --num-clients 1 --data-dir "$w/data" \
  --run-dir "$w/run" --meter model "${security[@]}" >"$w/coordinator.log" 2>"$w/time.log" &
timer=$!
for _ in $(seq 300); do
  grep -q "listening on" "$w/coordinator.log" "$w/time.log" 2>/dev/null && break
  sleep 0.1
done
wait_s=60
[[ "$mode" == curve-stranger ]] && wait_s=10
"$sender" "tcp://127.0.0.1:$port" "$frames" "$mib" "$senders" "$wait_s"
sleep 1
alive=yes
coordinator=$(pgrep -P "$timer" || true)
if [[ -n "$coordinator" ]]; then
  kill -TERM "$coordinator"
else
  alive=no  # it died under the attack (e.g. std::bad_alloc under a memory limit)
fi
wait "$timer" || true
rss=$(awk '/Maximum resident/ {print $NF}' "$w/time.log")
summary=no
[[ -f "$w/run/summary.json" ]] && summary=yes
echo "mode=$mode senders=$senders frames=$frames mib=$mib peak_rss_kb=$rss alive_after_attack=$alive" \
  "summary_json=$summary"
grep -m1 -E "terminate called|Aborted|what\(\)" "$w/time.log" || true
