#!/usr/bin/env bash
# greenfed-keys: CURVE keys for a Compose deployment (docker/compose.yaml). In the image as
# /usr/local/bin/greenfed-keys.
#
#   greenfed-keys generate            the one-shot `keys` service: makes the keys that are missing
#   greenfed-keys coordinator [ARGS]  sets the coordinator's key variables, execs the entrypoint
#   greenfed-keys client [ARGS]       waits for the coordinator (GREENFED_WAIT_FOR), claims one client
#                                     key, sets its variables, execs the entrypoint
#
# Layout under GREENFED_KEYS_DIR (default /results/keys, i.e. ./results/keys on the host):
#   coordinator/coordinator.{key,pub}   the coordinator's key pair (`greenfed keygen`)
#   clients/client-<i>.{key,pub}        i = 1..GREENFED_NUM_CLIENTS; the coordinator allows
#                                       clients/*.pub (--allow-clients DIR)
#   claims/client-<i>/owner             the container (hostname) that uses client-<i>
# Contract:
#   - generate keeps every existing key (idempotent: a second `up` reuses them, so copies on other
#     hosts stay valid) and creates the missing ones; it empties claims/, because it runs once per
#     `up`, before any client starts (compose: service_completed_successfully).
#   - client: a container reuses the claim that names its hostname (a restarted container keeps
#     its key), otherwise takes the lowest free client-<i> with an atomic mkdir. Each replica thus
#     has its own key, so the coordinator binds each shard index to one identity. No free key (more
#     replicas than GREENFED_NUM_CLIENTS): exit 1 naming the fix.
#   - GREENFED_INSECURE=1: nothing is generated or claimed; the entrypoint gets GREENFED_INSECURE
#     and runs in plaintext (the binary prints its warning).
#   - Variables already set by the caller (GREENFED_SECRET_KEY, GREENFED_SERVER_KEY,
#     GREENFED_ALLOW_CLIENTS) win over the ones derived here: a client on another host mounts its
#     own key files and sets them.
# Exit codes: 2 usage or bad boolean; 1 missing keygen, unwritable directory, no free key;
# otherwise those of greenfed.
set -euo pipefail

readonly PROG=greenfed-keys
bin=${GREENFED_BIN:-greenfed}
entrypoint=${GREENFED_ENTRYPOINT:-greenfed-entrypoint}
dir=${GREENFED_KEYS_DIR:-/results/keys}

die() {
  local code=$1
  shift
  echo "$PROG: $*" >&2
  exit "$code"
}

insecure() {
  case "${GREENFED_INSECURE:-}" in
    1|true|TRUE|True|yes|on) return 0 ;;
    ''|0|false|FALSE|False|no|off) return 1 ;;
    *) die 2 "GREENFED_INSECURE='$GREENFED_INSECURE' is not a boolean (1/true/yes/on or 0/false/no/off)" ;;
  esac
}

# keygen SUBDIR NAME: creates SUBDIR/NAME.{key,pub} unless both exist.
keygen() {
  local sub=$dir/$1 name=$2
  if [[ -s "$sub/$name.key" && -s "$sub/$name.pub" ]]; then
    kept=$((kept + 1))
    return 0
  fi
  "$bin" keygen --out "$sub" --name "$name" >/dev/null ||
    die 1 "'$bin keygen --out $sub --name $name' failed"
  made=$((made + 1))
}

generate() {
  if insecure; then
    echo "$PROG: GREENFED_INSECURE is set: no keys; coordinator and clients run in plaintext" >&2
    return 0
  fi
  local n=${GREENFED_NUM_CLIENTS:-}
  [[ "$n" =~ ^[1-9][0-9]{0,4}$ ]] ||
    die 2 "GREENFED_NUM_CLIENTS='$n': the number of client keys to make must be 1..99999"
  "$bin" keygen --help >/dev/null 2>&1 ||
    die 1 "this greenfed has no 'keygen' command (no CURVE support); set GREENFED_INSECURE=1" \
      "to run without encryption"
  umask 077
  mkdir -p -- "$dir/coordinator" "$dir/clients" "$dir/claims" 2>/dev/null ||
    die 1 "cannot create $dir as uid $(id -u); on the host run 'mkdir -p results' and set" \
      "GREENFED_UID=\$(id -u) GREENFED_GID=\$(id -g) for compose"
  [[ -w "$dir/clients" ]] || die 1 "$dir/clients is not writable by uid $(id -u)"
  made=0 kept=0
  keygen coordinator coordinator
  local i
  for ((i = 1; i <= n; i++)); do
    keygen clients "client-$i"
  done
  rm -rf -- "${dir:?}/claims" && mkdir -- "$dir/claims"
  echo "$PROG: $dir: coordinator + $n client keys ($made made, $kept kept);" \
    "coordinator public key $(cat "$dir/coordinator/coordinator.pub")"
}

# wait_for_coordinator: with GREENFED_WAIT_FOR=HOST:PORT (compose: coordinator:5555), returns once
# HOST:PORT accepts a TCP connection. On a Compose network a container's name resolves only while
# it runs, so a name that stops resolving means the coordinator has exited: the client then stops
# at once (exit 1) instead of retrying for GREENFED_CONNECT_TIMEOUT_S, and says where its reason is.
wait_for_coordinator() {
  local target=${GREENFED_WAIT_FOR:-}
  [[ -n "$target" ]] || return 0
  local host=${target%:*} port=${target##*:} waited=0 unresolved=0
  local limit=${GREENFED_CONNECT_TIMEOUT_S:-300}
  limit=${limit%%.*}
  [[ "$port" =~ ^[0-9]+$ && "$limit" =~ ^[0-9]+$ ]] ||
    die 2 "GREENFED_WAIT_FOR='$target' must be HOST:PORT and GREENFED_CONNECT_TIMEOUT_S a number of seconds"
  while :; do
    if getent hosts "$host" >/dev/null; then
      unresolved=0
      timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null && return 0
    else
      unresolved=$((unresolved + 1))
      ((unresolved < 5)) ||
        die 1 "the coordinator ('$host') is not running: its name has not resolved for 5 s;" \
          "its own error is above in the 'up' output (or: docker-compose logs coordinator)"
    fi
    ((limit == 0 || waited < limit)) ||
      die 1 "nothing accepts connections on $target after ${limit} s (GREENFED_CONNECT_TIMEOUT_S)"
    sleep 1
    waited=$((waited + 1))
  done
}

# claim: prints the index of this container's client key.
claim() {
  local me=${HOSTNAME:-$(cat /etc/hostname 2>/dev/null || echo unknown)}
  local c i
  [[ -d "$dir/claims" ]] || die 1 "$dir/claims is missing: the keys service did not run"
  for c in "$dir"/claims/client-*; do
    [[ -f "$c/owner" && "$(cat "$c/owner")" == "$me" ]] && { echo "${c##*/client-}"; return 0; }
  done
  for ((i = 1; ; i++)); do
    [[ -s "$dir/clients/client-$i.key" ]] ||
      die 1 "no free client key in $dir/clients ($((i - 1)) keys, all claimed): start at most" \
        "GREENFED_NUM_CLIENTS clients, or raise GREENFED_NUM_CLIENTS (the keys service makes that many)"
    if mkdir -- "$dir/claims/client-$i" 2>/dev/null; then
      echo "$me" >"$dir/claims/client-$i/owner"
      echo "$i"
      return 0
    fi
  done
}

(($# > 0)) || die 2 "usage: $PROG generate | coordinator [ARGS] | client [ARGS]"
cmd=$1
shift
case "$cmd" in
  generate) generate ;;
  coordinator)
    if ! insecure; then
      : "${GREENFED_SECRET_KEY:=$dir/coordinator/coordinator.key}"
      : "${GREENFED_ALLOW_CLIENTS:=$dir/clients}"
      export GREENFED_SECRET_KEY GREENFED_ALLOW_CLIENTS
    fi
    exec "$entrypoint" coordinator "$@"
    ;;
  client)
    wait_for_coordinator
    if ! insecure && [[ -z "${GREENFED_SECRET_KEY:-}" ]]; then
      index=$(claim)
      export GREENFED_SECRET_KEY=$dir/clients/client-$index.key
      echo "$PROG: client key $GREENFED_SECRET_KEY (claimed by ${HOSTNAME:-this container})" >&2
    fi
    if ! insecure; then
      : "${GREENFED_SERVER_KEY:=$dir/coordinator/coordinator.pub}"
      export GREENFED_SERVER_KEY
    fi
    exec "$entrypoint" client "$@"
    ;;
  *) die 2 "unknown command '$cmd'; expected generate, coordinator or client" ;;
esac
