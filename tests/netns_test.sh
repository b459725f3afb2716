#!/usr/bin/env bash
# ctest deploy/netns: a federated run across separate network namespaces (scripts/netns_run.sh):
# 1 coordinator + 4 clients, each started by docker/entrypoint.sh from GREENFED_* variables, on
# synthetic IDX data so it takes seconds. Asserts exit codes, the run directory and cleanup.
# Transport: CURVE, with keys made by `greenfed keygen` (scripts/netns_run.sh does it as an
# operator would) and passed through GREENFED_SECRET_KEY / GREENFED_ALLOW_CLIENTS /
# GREENFED_SERVER_KEY; the test checks that the coordinator admitted exactly the clients' keys.
# The synthetic set is easy (accuracy 1.0 in 2 rounds at the default learning rate), so the run
# uses target 1.0 and lr 1e-5: it cannot stop early and ends at max rounds, deterministically.
#
# Usage: tests/netns_test.sh SOURCE_DIR GREENFED_BINARY MAKE_SYNTHETIC_BINARY
# Env: GREENFED_NETNS_NETEM=1 adds --netem (50 ms delay, 2% loss on client 1's link).
# Exit: 0 pass, 1 fail, 77 skip (not root, or namespaces not permitted here).
set -euo pipefail

readonly PROG=netns_test.sh
if (($# != 3)); then
  echo "usage: $PROG SOURCE_DIR GREENFED_BINARY MAKE_SYNTHETIC_BINARY" >&2
  exit 2
fi
readonly src=$1 greenfed=$2 make_synthetic=$3
readonly clients=4 rounds=3

skip() { echo "$PROG: SKIP: $*"; exit 77; }
fail() { echo "$PROG: FAIL: $*" >&2; exit 1; }

((EUID == 0)) || skip "needs root for 'ip netns add' (uid $EUID)"
command -v ip >/dev/null 2>&1 || skip "'ip' (iproute2) is not installed; scripts/install-deps.sh adds it"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read summary.json"
[[ -x "$greenfed" ]] || fail "greenfed binary '$greenfed' is not executable"
[[ -x "$make_synthetic" ]] || fail "synthetic data tool '$make_synthetic' is not executable"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-netns-test.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
tag=gf-t$$

"$make_synthetic" "$tmp/data" --train 2000 --test 500 >"$tmp/make_synthetic.log" 2>&1 ||
  fail "greenfed_make_synthetic failed: $(cat "$tmp/make_synthetic.log")"

netem_args=()
[[ "${GREENFED_NETNS_NETEM:-0}" == 1 ]] && netem_args=(--netem)

started=$(date +%s.%N)
rc=0
bash "$src/scripts/netns_run.sh" --binary "$greenfed" --data-dir "$tmp/data" \
  --clients "$clients" --rounds "$rounds" --target 1 --env GREENFED_LR=0.00001 \
  --work-dir "$tmp/work" --tag "$tag" --timeout 240 "${netem_args[@]}" || rc=$?
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
  "$started" "$(date +%s.%N)")
((rc == 77)) && skip "scripts/netns_run.sh could not create namespaces"

# Cleanup must hold whatever the outcome.
leftover=$(ip netns list | grep -c "^$tag-" || true)
((leftover == 0)) || fail "$leftover namespaces named $tag-* left behind"

((rc == 0)) || fail "scripts/netns_run.sh exited $rc"
codes=$tmp/work/exit_codes.txt
[[ -f "$codes" ]] || fail "$codes is missing"
grep -qx "coordinator $tag-coord 0" "$codes" || fail "coordinator did not exit 0: $(cat "$codes")"
for ((k = 1; k <= clients; k++)); do
  grep -qx "client-$k $tag-c$k 0" "$codes" || fail "client-$k did not exit 0: $(cat "$codes")"
done
(($(wc -l <"$codes") == clients + 1)) || fail "expected $((clients + 1)) nodes in $codes"
coord_log=$tmp/work/logs/coordinator.log
grep -q "CURVE: coordinator key .*, $clients client key(s) allowed" "$coord_log" ||
  fail "the coordinator did not run CURVE with $clients allowed keys: $(grep -i curve "$coord_log" || true)"
! grep -q -- "--insecure" "$tmp/work/logs/"*.log || fail "a node ran --insecure"
for ((k = 1; k <= clients; k++)); do
  [[ -f "$tmp/work/keys/clients/client-$k.key" ]] || fail "no key for client-$k from greenfed keygen"
done

python3 - "$tmp/work/run" "$rounds" "$clients" <<'EOF' || fail "run directory check failed"
import csv, json, sys
run, rounds, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
summary = json.load(open(f"{run}/summary.json"))
assert summary["kind"] == "federated", summary["kind"]
assert summary["rounds"] == rounds, f"summary.json rounds {summary['rounds']}, expected {rounds}"
assert summary["reached"] is False, f"target reached early: {summary['stop_reason']}"
config = json.load(open(f"{run}/config.json"))
assert config["partition"]["num_clients"] == clients, config["partition"]
assert config["node"]["country"] == "FRA", config["node"]
with open(f"{run}/rounds.csv") as f:
    rows = list(csv.DictReader(f))
assert [int(r["round"]) for r in rows] == list(range(1, rounds + 1)), [r["round"] for r in rows]
for r in rows:
    assert int(r["clients_succeeded"]) == clients, r
# Each client declared its own country (scripts/netns_run.sh: USA CHN DEU IND), the
# coordinator FRA: the per-node accounting went through the entrypoint's variables.
with open(f"{run}/nodes.csv") as f:
    nodes = {(r["node_id"], r["country"]) for r in csv.DictReader(f)}
assert ("coordinator", "FRA") in nodes, f"no coordinator row with FRA in {sorted(nodes)}"
client_nodes = {(n, c) for n, c in nodes if n.startswith("client-")}
assert len({n for n, _ in client_nodes}) == clients, f"client nodes {sorted(client_nodes)}"
countries = sorted(c for _, c in client_nodes)
assert countries == ["CHN", "DEU", "IND", "USA"], f"client countries {countries}"
print(f"summary: rounds={summary['rounds']} final_accuracy={summary['final_accuracy']} "
      f"stop_reason={summary['stop_reason']!r} co2e_g={summary['co2e_g']}")
EOF

echo "$PROG: PASS: $clients clients + coordinator in $((clients + 2)) namespaces, $rounds rounds, ${elapsed} s"
