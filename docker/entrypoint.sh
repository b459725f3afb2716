#!/usr/bin/env bash
# greenfed container entrypoint: turns GREENFED_* environment variables into `greenfed` flags
# and execs the binary, so the binary is PID 1 and receives SIGTERM from `docker stop` itself.
#
# Contract:
#   - The role comes from the first argument (coordinator|client|centralized|report|compare|
#     countries) or, without one, from GREENFED_ROLE. Any further arguments are appended after
#     the flags built from the environment, then GREENFED_EXTRA_ARGS (split on whitespace).
#   - A variable adds its flag only when it is set AND non-empty, so the binary's own defaults
#     rule everything else (compose passes `${GREENFED_LR:-}`, i.e. empty when unset on the host).
#   - Variables that do not apply to the role are ignored: one shared environment (compose's
#     x-greenfed-env) serves every service. The command line is printed to stderr before exec.
#   - `entrypoint.sh healthcheck` exits 0 when the coordinator's TCP port (from GREENFED_BIND)
#     accepts a connection; it needs only bash and coreutils (timeout), which the image has.
#   - `entrypoint.sh greenfed ARGS...` runs the binary with ARGS verbatim (no environment flags).
#   - GREENFED_BIN overrides the binary (default: `greenfed` on PATH); the namespace test uses it.
#   - GREENFED_RUN_DIR_ROTATE=1: an existing, non-empty run directory (coordinator, centralized) is
#     renamed to <dir>.<UTC time> first, so each run gets a fresh directory (rotate_existing).
#   - Transport security: CURVE unless GREENFED_INSECURE is true. Coordinator: GREENFED_SECRET_KEY
#     (its .key file) and GREENFED_ALLOW_CLIENTS (file or directory of client .pub keys); client:
#     GREENFED_SECRET_KEY and GREENFED_SERVER_KEY (the coordinator's .pub). With neither keys nor
#     GREENFED_INSECURE=1 the binary exits 2 naming the missing flag (docs/deployment.md, Security).
#   - Exit codes: those of greenfed; 2 for an unknown role or a bad boolean; 1 when the run or
#     output directory cannot be written by this user.
# Every GREENFED_* variable compose may set must appear in this file: tests/compose_check.sh
# checks that.
set -euo pipefail

readonly PROG=greenfed-entrypoint
readonly ROLES="coordinator client centralized report compare countries"
bin=${GREENFED_BIN:-greenfed}
args=()

die() {
  local code=$1
  shift
  echo "$PROG: $*" >&2
  exit "$code"
}

# flag VAR --flag: appends `--flag "$VAR"` when VAR is set and non-empty.
flag() {
  local var=$1 name=$2
  if [[ -n "${!var:-}" ]]; then
    args+=("$name" "${!var}")
  fi
}

# switch VAR --flag: appends `--flag` when VAR is a true value; empty or false adds nothing.
switch() {
  local var=$1 name=$2
  case "${!var:-}" in
    1|true|TRUE|True|yes|on) args+=("$name") ;;
    ''|0|false|FALSE|False|no|off) ;;
    *) die 2 "$var='${!var}' is not a boolean (expected 1/true/yes/on or 0/false/no/off)" ;;
  esac
}

# Energy and carbon accounting of this node: every role that trains or coordinates.
node_flags() {
  flag GREENFED_DATA_DIR --data-dir
  flag GREENFED_COUNTRY --country
  flag GREENFED_PUE --pue
  flag GREENFED_METER --meter
  flag GREENFED_WATTS_PER_CORE --watts-per-core
  flag GREENFED_POWER_PROFILE --power-profile
}

# Fails early, with the fix, when a directory the run must create is not writable: the usual
# cause is a host bind mount (./results) owned by another uid than the container user.
check_writable() {
  local var=$1 dir=${!1:-}
  [[ -n "$dir" ]] || return 0
  local probe=$dir
  while [[ ! -e "$probe" ]]; do
    probe=$(dirname -- "$probe")
  done
  if [[ ! -w "$probe" ]]; then
    die 1 "$var=$dir: '$probe' is not writable by uid $(id -u); on the host run" \
      "'mkdir -p results' and set GREENFED_UID=\$(id -u) GREENFED_GID=\$(id -g) for compose," \
      "or make the directory writable"
  fi
}

# With GREENFED_RUN_DIR_ROTATE=1 (compose sets it), a run directory that exists and is not empty is
# renamed to <dir>.<UTC time it was last written> before the run, so every `up` starts a new run
# in the same place and the previous one is kept next to it (the binary refuses a used one).
rotate_existing() {
  local var=$1 dir=${!1:-}
  case "${GREENFED_RUN_DIR_ROTATE:-}" in
    1|true|TRUE|True|yes|on) ;;
    ''|0|false|FALSE|False|no|off) return 0 ;;
    *) die 2 "GREENFED_RUN_DIR_ROTATE='$GREENFED_RUN_DIR_ROTATE' is not a boolean" ;;
  esac
  [[ -n "$dir" && -d "$dir" && -n "$(ls -A -- "$dir")" ]] || return 0
  dir=${dir%/}
  local stamp to n=1
  stamp=$(date -u -r "$dir" +%Y%m%dT%H%M%SZ)
  to=$dir.$stamp
  while [[ -e "$to" ]]; do
    n=$((n + 1))
    to=$dir.$stamp-$n
  done
  mv -- "$dir" "$to" || die 1 "$var=$dir: cannot move the previous run to $to"
  echo "$PROG: $var=$dir held a previous run: moved to $to" >&2
}

healthcheck() {
  local bind=${GREENFED_BIND:-tcp://127.0.0.1:5555}
  local hostport=${bind#*://}
  local host=${hostport%:*} port=${hostport##*:}
  if [[ -z "$port" || "$port" == *[!0-9]* ]]; then
    die 1 "healthcheck: cannot read a TCP port from GREENFED_BIND='$bind'"
  fi
  case "$host" in
    ''|'*'|0.0.0.0) host=127.0.0.1 ;;
  esac
  # /dev/tcp is bash's own; a bare connect+close is dropped by ZeroMQ as a failed handshake.
  timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null ||
    die 1 "healthcheck: nothing accepts connections on $host:$port"
}

role=${GREENFED_ROLE:-}
role_from=GREENFED_ROLE
if (($# > 0)); then
  case "$1" in
    healthcheck) healthcheck; exit 0 ;;
    greenfed) shift; exec "$bin" "$@" ;;
    -*) ;;  # flags only: the role still comes from GREENFED_ROLE
    *) role=$1; role_from="the first argument"; shift ;;
  esac
fi

case "$role" in
  coordinator)
    flag GREENFED_BIND --bind
    flag GREENFED_NUM_CLIENTS --num-clients
    flag GREENFED_MIN_AVAILABLE_CLIENTS --min-available-clients
    flag GREENFED_MIN_FIT_CLIENTS --min-fit-clients
    flag GREENFED_FRACTION_FIT --fraction-fit
    flag GREENFED_PARTITION --partition
    flag GREENFED_ALPHA --alpha
    flag GREENFED_TARGET_ACCURACY --target-accuracy
    flag GREENFED_MAX_ROUNDS --max-rounds
    flag GREENFED_LOCAL_EPOCHS --local-epochs
    flag GREENFED_LR --lr
    flag GREENFED_BATCH_SIZE --batch-size
    flag GREENFED_SEED --seed
    flag GREENFED_ROUND_TIMEOUT_S --round-timeout-s
    flag GREENFED_RUN_DIR --run-dir
    flag GREENFED_MAX_TRAIN_EXAMPLES --max-train-examples
    flag GREENFED_MAX_TEST_EXAMPLES --max-test-examples
    flag GREENFED_THREADS --threads
    flag GREENFED_SECRET_KEY --secret-key
    flag GREENFED_ALLOW_CLIENTS --allow-clients
    switch GREENFED_INSECURE --insecure
    node_flags
    check_writable GREENFED_RUN_DIR
    rotate_existing GREENFED_RUN_DIR
    ;;
  client)
    flag GREENFED_COORDINATOR --connect
    # Index, scheme and size come from the coordinator's welcome; when set here they are
    # expectations the client checks against it (a mismatch is an error, not a silent rerun).
    flag GREENFED_CLIENT_INDEX --client-index
    flag GREENFED_NUM_CLIENTS --num-clients
    flag GREENFED_PARTITION --partition
    flag GREENFED_CLIENT_ID --client-id
    flag GREENFED_CONNECT_TIMEOUT_S --connect-timeout-s
    flag GREENFED_MAX_TRAIN_EXAMPLES --max-train-examples
    flag GREENFED_MAX_TEST_EXAMPLES --max-test-examples
    flag GREENFED_THREADS --threads
    flag GREENFED_SECRET_KEY --secret-key
    flag GREENFED_SERVER_KEY --server-key
    switch GREENFED_INSECURE --insecure
    node_flags
    ;;
  centralized)
    flag GREENFED_TARGET_ACCURACY --target-accuracy
    flag GREENFED_MAX_EPOCHS --max-epochs
    flag GREENFED_LR --lr
    flag GREENFED_LR_DECAY --lr-decay
    flag GREENFED_BATCH_SIZE --batch-size
    flag GREENFED_SEED --seed
    flag GREENFED_RUN_DIR --run-dir
    flag GREENFED_MAX_TRAIN_EXAMPLES --max-train-examples
    flag GREENFED_MAX_TEST_EXAMPLES --max-test-examples
    flag GREENFED_THREADS --threads
    node_flags
    check_writable GREENFED_RUN_DIR
    rotate_existing GREENFED_RUN_DIR
    ;;
  report)
    # Run directories are positional; word splitting is intended (paths without spaces).
    if [[ -n "${GREENFED_REPORT_RUNS:-}" ]]; then
      read -r -a runs <<<"$GREENFED_REPORT_RUNS"
      args+=("${runs[@]}")
    fi
    flag GREENFED_OUT_DIR --out
    flag GREENFED_REPORT_COUNTRIES --countries
    flag GREENFED_REPORT_CENTRALIZED_PUES --centralized-pues
    check_writable GREENFED_OUT_DIR
    ;;
  compare)
    # One container runs all three runs on loopback; the shared FL variables keep their meaning.
    switch GREENFED_QUICK --quick
    flag GREENFED_OUT_DIR --out
    flag GREENFED_TARGET_ACCURACY --target-accuracy
    flag GREENFED_NUM_CLIENTS --clients
    flag GREENFED_MAX_ROUNDS --max-rounds
    flag GREENFED_MAX_EPOCHS --max-epochs
    flag GREENFED_LR --fl-lr
    flag GREENFED_CENTRAL_LR --central-lr
    flag GREENFED_CENTRAL_LR_DECAY --central-lr-decay
    flag GREENFED_NON_IID --non-iid
    flag GREENFED_ALPHA --alpha
    flag GREENFED_COUNTRY --country
    flag GREENFED_CLIENT_COUNTRY --client-country
    flag GREENFED_DATA_DIR --data-dir
    flag GREENFED_METER --meter
    check_writable GREENFED_OUT_DIR
    ;;
  countries) ;;
  '') die 2 "no role: set GREENFED_ROLE or pass one of: $ROLES" ;;
  *) die 2 "unknown role '$role' (from $role_from); expected one of: $ROLES" ;;
esac

args+=("$@")
if [[ -n "${GREENFED_EXTRA_ARGS:-}" ]]; then
  read -r -a extra <<<"$GREENFED_EXTRA_ARGS"
  args+=("${extra[@]}")
fi

line=$(printf ' %q' "$bin" "$role" "${args[@]}")
echo "$PROG: exec${line}" >&2
exec "$bin" "$role" "${args[@]}"
