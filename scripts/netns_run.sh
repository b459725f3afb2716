#!/usr/bin/env bash
# A multi-host greenfed run without Docker: the coordinator and each client get their own Linux
# network namespace (own interfaces, addresses, routing table, loopback), joined by veth pairs to
# a bridge that lives in a namespace of its own. Every node is started through
# docker/entrypoint.sh with the same GREENFED_* variables docker/compose.yaml sets, so this
# exercises the container contract on separate network stacks.
#
# Isolation: the test subnet (default 10.213.0.0/24) exists only inside these namespaces; none of
# them has a default route or a link to the host's namespace, so no packet leaves them. Names
# carry a per-run tag (default gf-<pid>), so parallel runs do not collide. An EXIT trap kills the
# processes this script started and deletes its namespaces (their veths and bridge go with them).
#
# Usage: scripts/netns_run.sh [options]
#   --binary PATH     greenfed binary (default: <repo>/build/apps/greenfed)
#   --data-dir DIR    IDX files for every node (default: /usr/share/datasets/fashion-mnist)
#   --clients N       client namespaces, >= 1 (default 4)
#   --rounds R        GREENFED_MAX_ROUNDS (default 3)
#   --target A        GREENFED_TARGET_ACCURACY (default 0.99)
#   --work-dir DIR    run dir, logs and exit_codes.txt go here (default: a new temp dir, removed
#                     on success unless --keep)
#   --tag NAME        namespace name prefix (default gf-<pid>)
#   --subnet A.B.C    /24 prefix (default 10.213.0); coordinator .1, client K at .(10+K)
#   --netem           `netem delay 50ms loss 2%` on client 1's link; skipped with a message when
#                     the kernel has no sch_netem
#   --rate RATE       token-bucket limit (tc tbf) on client 1's uplink, e.g. 20mbit
#   --timeout S       deadline for the whole run in seconds (default 240)
#   --env VAR=VALUE   extra variable for every node (repeatable), e.g. GREENFED_MAX_TEST_EXAMPLES=500
#   --insecure        plaintext (GREENFED_INSECURE=1) instead of CURVE keys made by `greenfed keygen`
#                     in WORK/keys (coordinator.key, clients/client-K.key; the default)
#   --keep            keep the temp work dir
# Exit: 0 when the coordinator and every client exited 0; 1 otherwise; 2 for bad arguments;
# 77 when network namespaces cannot be created here (not root, no `ip`, no permission).
# Writes WORK/exit_codes.txt ("<node> <namespace> <exit code>" per line) and WORK/logs/<node>.log.
set -euo pipefail

readonly PROG=netns_run.sh
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
binary=$repo/build/apps/greenfed
data_dir=/usr/share/datasets/fashion-mnist
clients=4
rounds=3
target=0.99
work_dir=
tag=gf-$$
subnet=10.213.0
netem=0
rate=
timeout_s=240
keep=0
insecure=0
extra_env=()

usage() { sed -n '13,33p' "$0" | sed 's/^# \{0,1\}//'; }
bad_arg() { echo "$PROG: $*" >&2; usage >&2; exit 2; }
need_value() { (($# >= 2)) || bad_arg "$1 needs a value"; }

while (($# > 0)); do
  case "$1" in
    --binary) need_value "$@"; binary=$2; shift ;;
    --data-dir) need_value "$@"; data_dir=$2; shift ;;
    --clients) need_value "$@"; clients=$2; shift ;;
    --rounds) need_value "$@"; rounds=$2; shift ;;
    --target) need_value "$@"; target=$2; shift ;;
    --work-dir) need_value "$@"; work_dir=$2; shift ;;
    --tag) need_value "$@"; tag=$2; shift ;;
    --subnet) need_value "$@"; subnet=$2; shift ;;
    --netem) netem=1 ;;
    --rate) need_value "$@"; rate=$2; shift ;;
    --timeout) need_value "$@"; timeout_s=$2; shift ;;
    --env) need_value "$@"; [[ "$2" == GREENFED_*=* ]] || bad_arg "--env expects GREENFED_VAR=VALUE, got '$2'"
           extra_env+=("$2"); shift ;;
    --keep) keep=1 ;;
    --insecure) insecure=1 ;;
    -h|--help) usage; exit 0 ;;
    *) bad_arg "unknown argument '$1'" ;;
  esac
  shift
done

[[ "$clients" =~ ^[1-9][0-9]*$ ]] && ((clients <= 200)) || bad_arg "--clients must be 1..200, got '$clients'"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || bad_arg "--rounds must be a positive integer, got '$rounds'"
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || bad_arg "--timeout must be a positive integer, got '$timeout_s'"
[[ "$subnet" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || bad_arg "--subnet must look like 10.213.0, got '$subnet'"
[[ "$tag" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || bad_arg "--tag must be 1-40 of [A-Za-z0-9_.-], got '$tag'"
[[ -x "$binary" ]] || bad_arg "--binary '$binary' is not an executable file"
[[ -d "$data_dir" ]] || bad_arg "--data-dir '$data_dir' is not a directory"
readonly entrypoint=$repo/docker/entrypoint.sh
[[ -f "$entrypoint" ]] || { echo "$PROG: missing $entrypoint" >&2; exit 1; }

skip() { echo "$PROG: SKIP: $*" >&2; status=77; exit 77; }
((EUID == 0)) || skip "network namespaces need root (running as uid $EUID)"
command -v ip >/dev/null 2>&1 || skip "'ip' (iproute2) is not installed"

own_work_dir=0
if [[ -z "$work_dir" ]]; then
  work_dir=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-netns.XXXXXX")
  own_work_dir=1
fi
mkdir -p "$work_dir/logs"
work_dir=$(cd -- "$work_dir" && pwd)
binary=$(cd -- "$(dirname -- "$binary")" && pwd)/$(basename -- "$binary")
data_dir=$(cd -- "$data_dir" && pwd)

namespaces=()  # created by this run, deleted by cleanup
pids=()        # `timeout` wrappers of the nodes started by this run
names=()       # node name per pid
status=1

cleanup() {
  local pid ns
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Anything still inside our namespaces was started by this run (a child of a node).
  for ns in "${namespaces[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "$PROG: could not delete namespace $ns" >&2
  done
  if ((status == 0 || status == 77)); then
    ((own_work_dir && !keep)) && rm -rf -- "$work_dir"
  else
    echo "$PROG: logs kept in $work_dir/logs" >&2
  fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_ns() {
  ip netns add "$1" || return 1
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# attach NS PORT ADDR: veth pair created directly inside the two namespaces, so no interface
# ever appears in the host's namespace; eth0 in NS, PORT on the bridge.
attach() {
  local ns=$1 port=$2 addr=$3
  ip link add eth0 netns "$ns" type veth peer name "$port" netns "$tag-br"
  ip -n "$tag-br" link set "$port" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

new_ns "$tag-br" 2>"$work_dir/logs/ip.err" ||
  skip "'ip netns add' is not permitted here: $(cat "$work_dir/logs/ip.err")"
ip -n "$tag-br" link add br0 type bridge
ip -n "$tag-br" link set br0 up
readonly coord_addr=$subnet.1
new_ns "$tag-coord"
attach "$tag-coord" coord "$coord_addr"
for ((k = 1; k <= clients; k++)); do
  new_ns "$tag-c$k"
  attach "$tag-c$k" "c$k" "$subnet.$((10 + k))"
done
echo "$PROG: $((clients + 2)) namespaces $tag-{br,coord,c1..c$clients}, subnet $subnet.0/24"

if ((netem)); then
  if ip netns exec "$tag-c1" tc qdisc add dev eth0 root netem delay 50ms loss 2% \
      2>"$work_dir/logs/tc.err"; then
    echo "$PROG: netem delay 50ms loss 2% on client 1's link"
  else
    echo "$PROG: netem unavailable, running without it: $(cat "$work_dir/logs/tc.err")" >&2
  fi
fi
if [[ -n "$rate" ]]; then
  ip netns exec "$tag-c1" tc qdisc add dev eth0 root tbf rate "$rate" burst 32kbit latency 400ms
  echo "$PROG: tbf rate $rate on client 1's uplink"
fi

# The variables compose gives every node (docker/compose.yaml x-greenfed-env), then per-node ones.
shared_env=(
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME="$work_dir"
  GREENFED_BIN="$binary"
  GREENFED_NUM_CLIENTS="$clients"
  GREENFED_MAX_ROUNDS="$rounds"
  GREENFED_TARGET_ACCURACY="$target"
  GREENFED_SEED=1
  GREENFED_DATA_DIR="$data_dir"
  "${extra_env[@]}"
)
# CURVE keys, made as an operator would: one pair per node with `greenfed keygen`; the clients'
# .pub files form the coordinator's allow-list directory, the coordinator's .pub is pinned by
# every client. Secret keys are 0600 and each node is given only its own.
coord_security=(GREENFED_INSECURE=1)
client_security() { echo GREENFED_INSECURE=1; }
if ((!insecure)); then
  keys=$work_dir/keys
  "$binary" keygen --out "$keys" --name coordinator >"$work_dir/logs/keygen.log" 2>&1 ||
    { echo "$PROG: greenfed keygen failed: $(cat "$work_dir/logs/keygen.log")" >&2; exit 1; }
  for ((k = 1; k <= clients; k++)); do
    "$binary" keygen --out "$keys/clients" --name "client-$k" >>"$work_dir/logs/keygen.log" 2>&1 ||
      { echo "$PROG: greenfed keygen failed: $(cat "$work_dir/logs/keygen.log")" >&2; exit 1; }
  done
  coord_security=(GREENFED_SECRET_KEY="$keys/coordinator.key" GREENFED_ALLOW_CLIENTS="$keys/clients")
  client_security() {
    echo "GREENFED_SECRET_KEY=$keys/clients/client-$1.key"
    echo "GREENFED_SERVER_KEY=$keys/coordinator.pub"
  }
  echo "$PROG: CURVE keys for the coordinator and $clients clients in $keys (greenfed keygen)"
else
  echo "$PROG: --insecure: plaintext, no authentication" >&2
fi

# Per-node accounting, as on real machines: each node declares its own grid and PUE.
readonly countries=(USA CHN DEU IND BRA)

# start NAME NS VAR=VALUE...: runs the entrypoint in NS with exactly these variables.
start() {
  local name=$1 ns=$2
  shift 2
  timeout --kill-after=10 "$timeout_s" \
    ip netns exec "$ns" env -i "${shared_env[@]}" "$@" bash "$entrypoint" \
    >"$work_dir/logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

running() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$state" != Z ]]
}

started_at=$SECONDS
# Half the clients start before the coordinator (they must retry with backoff), the rest after
# its healthcheck passes (what compose's depends_on: service_healthy does).
early=$(((clients + 1) / 2))
start_client() {
  local k=$1 security
  mapfile -t security < <(client_security "$k")
  start "client-$k" "$tag-c$k" GREENFED_ROLE=client GREENFED_CLIENT_ID="$tag-c$k" "${security[@]}" \
    GREENFED_COORDINATOR="tcp://$coord_addr:5555" GREENFED_THREADS=1 \
    GREENFED_COUNTRY="${countries[$(((k - 1) % ${#countries[@]}))]}" GREENFED_PUE=1.2
}
for ((k = 1; k <= early; k++)); do
  start_client "$k"
done
sleep 1  # the early clients are now retrying against a port nobody listens on
start coordinator "$tag-coord" GREENFED_ROLE=coordinator GREENFED_BIND=tcp://0.0.0.0:5555 "${coord_security[@]}" \
  GREENFED_RUN_DIR="$work_dir/run" GREENFED_COUNTRY=FRA GREENFED_PUE=1.1
coord_pid=${pids[-1]}

healthy=0
while ((SECONDS - started_at < timeout_s)) && running "$coord_pid"; do
  if ip netns exec "$tag-coord" env -i GREENFED_BIND=tcp://0.0.0.0:5555 \
      bash "$entrypoint" healthcheck 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 0.5
done
if ((healthy)); then
  echo "$PROG: coordinator healthy after $((SECONDS - started_at)) s (entrypoint healthcheck)"
else
  echo "$PROG: coordinator never passed its healthcheck" >&2
fi
for ((k = early + 1; k <= clients; k++)); do
  start_client "$k"
done

rc=0
wait "$coord_pid" || rc=$?
echo "$PROG: coordinator exited $rc after $((SECONDS - started_at)) s"
# Clients exit on the coordinator's shutdown message; give them a grace period, then stop them.
grace_until=$((SECONDS + 30))
if ((rc != 0)); then
  grace_until=$SECONDS
fi
: >"$work_dir/exit_codes.txt"
failed=0
for i in "${!pids[@]}"; do
  pid=${pids[$i]}
  name=${names[$i]}
  ns=$tag-coord
  [[ "$name" == client-* ]] && ns=$tag-c${name#client-}
  if [[ "$name" == coordinator ]]; then
    code=$rc
  else
    while running "$pid" && ((SECONDS < grace_until)); do
      sleep 0.2
    done
    if running "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      echo "$PROG: $name still running after the coordinator ended; stopped it" >&2
    fi
    code=0
    wait "$pid" || code=$?
  fi
  echo "$name $ns $code" >>"$work_dir/exit_codes.txt"
  ((code == 0)) || failed=1
done
pids=()
column -t "$work_dir/exit_codes.txt" 2>/dev/null || cat "$work_dir/exit_codes.txt"

if ((failed)); then
  for log in "$work_dir"/logs/*.log; do
    echo "---- tail of $log" >&2
    tail -n 15 "$log" >&2
  done
  status=1
else
  kept="run dir $work_dir/run"
  ((own_work_dir && !keep)) && kept="work dir removed (--keep keeps it)"
  echo "$PROG: all $((clients + 1)) nodes exited 0 in $((SECONDS - started_at)) s; $kept"
  status=0
fi
exit "$status"
