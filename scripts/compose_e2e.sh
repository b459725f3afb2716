#!/usr/bin/env bash
# ctest deploy/compose_e2e: the Compose deployment for real, on a Docker engine this script starts.
#   1. installs docker.io, docker-compose and debootstrap from apt when missing;
#   2. starts its own dockerd (own data root, exec root, pidfile, unix socket; overlay2, else vfs);
#   3. debian:bookworm: the local image if the engine has one (the data root is cached in
#      GREENFED_E2E_DATA_ROOT), else built from the Debian archive apt uses (debootstrap + import):
#      no image registry is contacted;
#   4. builds the greenfed image (docker/Dockerfile) and prints its size;
#   5. `docker-compose up` with 3 clients + the baseline profile on small shards, CURVE on when the
#      image's greenfed has `keygen`: every container must exit 0, and results/fl,
#      results/centralized, results/report/report.{md,csv,svg} and the keys must be on the host;
#      prints each container's peak memory (cgroup);
#   6. a second `up`: must start a new run in results/fl and keep the first as results/fl.<time>;
#   7. a coordinator that cannot start (unknown flag): its own message must be in `up`'s output;
#   8. tears down (compose down, engine stopped by its PID).
# Usage: scripts/compose_e2e.sh [SOURCE_DIR]     Exit: 0 pass, 1 fail, 77 skipped (says why).
# Environment: GREENFED_E2E_DATA_ROOT (default /var/tmp/greenfed-docker; reused between runs for
# its image layers, a fresh machine starts empty), GREENFED_E2E_KEEP=1 keeps the temp dir.
set -euo pipefail

readonly PROG=compose_e2e.sh
src=$(cd -- "${1:-$(dirname "$0")/..}" && pwd)
readonly compose_file=$src/docker/compose.yaml
readonly docker=/usr/bin/docker  # Debian's client; another `docker` may come first on PATH
readonly image=greenfed:e2e
data_root=${GREENFED_E2E_DATA_ROOT:-/var/tmp/greenfed-docker}
t0=$SECONDS
stage_t0=$SECONDS

log() { echo "$PROG: [$((SECONDS - t0)) s] $*"; }
skip() { echo "$PROG: SKIP: $*"; exit 77; }
fail() { echo "$PROG: FAIL: $*" >&2; exit 1; }
stage() { stage_t0=$SECONDS; log "stage $1"; }
stage_done() { log "stage $1 done in $((SECONDS - stage_t0)) s"; }

((EUID == 0)) || skip "needs root to start a Docker engine (running as uid $EUID)"

# 1. Packages.
stage packages
need=()
[[ -x /usr/sbin/dockerd && -x "$docker" ]] || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } \
    >/tmp/greenfed-e2e-apt.log 2>&1 || skip "cannot install ${need[*]} with apt (/tmp/greenfed-e2e-apt.log)"
fi
stage_done packages

tmp=$(mktemp -d /tmp/greenfed-e2e.XXXXXX)
export DOCKER_HOST=unix://$tmp/docker.sock
project=gfe2e$$
results=$tmp/results
dockerd_pid=''

compose() {
  docker-compose -f "$compose_file" -p "$project" "$@"
}

# Sets peak-memory samplers aside, removes the project, stops the engine by its PID.
cleanup() {
  local rc=$?
  set +e
  [[ -n "${sampler_pid:-}" ]] && kill "$sampler_pid" 2>/dev/null
  if [[ -n "$dockerd_pid" ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
    compose --profile baseline down -v --remove-orphans >/dev/null 2>&1
    kill -TERM "$dockerd_pid"
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$dockerd_pid" 2>/dev/null && { log "dockerd $dockerd_pid did not stop: SIGKILL"; kill -KILL "$dockerd_pid"; }
    log "engine (pid $dockerd_pid) stopped"
  fi
  if [[ "${GREENFED_E2E_KEEP:-0}" == 1 ]]; then
    log "kept $tmp"
  else
    # dockerd leaves its netns bind mount (exec-root/netns/default) behind: unmount what is
    # mounted under the temp dir, deepest first, then remove it.
    awk -v t="$tmp/" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    rm -rf -- "$tmp"
  fi
  log "total $((SECONDS - t0)) s, exit $rc"
  exit "$rc"
}
trap cleanup EXIT

# 2. The engine. One engine at a time may use the cached data root; a second run uses a fresh one.
stage engine
mkdir -p "$data_root"
exec 9>"$data_root.lock"
if ! flock -n 9; then
  log "$data_root is in use by another run: using a fresh data root"
  data_root=$tmp/data-root
fi
start_engine() {
  local driver=$1
  # --bridge none: no default docker0 bridge (another engine on this host may own it); Compose
  # creates its own project network.
  /usr/sbin/dockerd --data-root "$data_root" --exec-root "$tmp/exec" --pidfile "$tmp/dockerd.pid" \
    -H "$DOCKER_HOST" --storage-driver "$driver" --bridge none >"$tmp/dockerd-$driver.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do
    if "$docker" info >/dev/null 2>&1; then return 0; fi
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$dockerd_pid" 2>/dev/null
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=''
  return 1
}
if start_engine overlay2; then
  driver=overlay2
elif start_engine vfs; then
  driver=vfs
  log "overlay2 failed (tail of its log below), running on vfs (slower)"
  tail -3 "$tmp/dockerd-overlay2.log"
else
  tail -5 "$tmp/dockerd-vfs.log"
  skip "the Docker engine does not start here (no privileges?); dockerd log above"
fi
log "engine: dockerd $("$docker" version -f '{{.Server.Version}}') pid $dockerd_pid, $driver, data root $data_root"
stage_done engine

# 3. The base image.
stage base-image
if "$docker" image inspect debian:bookworm >/dev/null 2>&1; then
  log "debian:bookworm is in the engine's cache: reused"
else
  # The mirror and the Debian sources that apt uses on this host (deb822 or one-line).
  sources=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    if grep -Eq '^(URIs:|deb )' "$f" && ! grep -E '^(URIs:|deb )' "$f" | grep -Evq 'debian\.org|/debian(-security)?/?([[:space:]]|$)'; then
      sources+=("$f")
    fi
  done
  ((${#sources[@]})) || skip "no Debian apt source on this host to build debian:bookworm from"
  mirror=$(sed -nE 's/^URIs:[[:space:]]*([^[:space:]]+).*/\1/p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' \
    "${sources[@]}" | grep -v security | head -1)
  [[ -n "$mirror" ]] || skip "no Debian mirror found in ${sources[*]}"
  log "debootstrap --variant=minbase bookworm from $mirror (sources: ${sources[*]})"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -5 "$tmp/debootstrap.log"; fail "debootstrap failed"; }
  rm -f "$tmp/rootfs/etc/apt/sources.list"
  for f in "${sources[@]}"; do cp -- "$f" "$tmp/rootfs/etc/apt/sources.list.d/"; done
  rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/* "$tmp"/rootfs/var/log/*.log
  tar -C "$tmp/rootfs" -c . | "$docker" import - debian:bookworm >/dev/null
  rm -rf -- "$tmp/rootfs"
fi
log "base image debian:bookworm: $(( $("$docker" image inspect -f '{{.Size}}' debian:bookworm) / 1000000 )) MB"
stage_done base-image

# 4. The greenfed image.
stage build
# --network host: the engine has no default bridge (--bridge none), and RUN steps need apt.
"$docker" build --network host -f "$src/docker/Dockerfile" -t "$image" "$src" >"$tmp/build.log" 2>&1 ||
  { tail -30 "$tmp/build.log"; fail "docker build failed"; }
grep -E 'runtime-rootfs.sh:' "$tmp/build.log" | sed "s/^/$PROG: /" || true
# Keep the build stages' layers (the compile) tagged, then drop what earlier builds left untagged,
# so the cached data root stays bounded and the next run on this machine reuses the compile.
"$docker" build --network host --target rootfs -f "$src/docker/Dockerfile" -t "$image-rootfs" "$src" \
  >>"$tmp/build.log" 2>&1 || fail "docker build --target rootfs (all cached) failed"
"$docker" image prune -f >/dev/null 2>&1 || true
size=$("$docker" image inspect -f '{{.Size}}' "$image")
log "image $image: $((size / 1000000)) MB ($size bytes)"
stage_done build

# 5. Compose: 3 clients + baseline.
export GREENFED_IMAGE=$image GREENFED_RESULTS=$results GREENFED_UID=10001 GREENFED_GID=10001
export GREENFED_NUM_CLIENTS=3 GREENFED_MAX_ROUNDS=2 GREENFED_TARGET_ACCURACY=0.99 \
  GREENFED_MAX_TRAIN_EXAMPLES=400 GREENFED_MAX_TEST_EXAMPLES=300 \
  GREENFED_CENTRAL_MAX_TRAIN_EXAMPLES=1200 GREENFED_MAX_EPOCHS=2 GREENFED_COUNTRY=FRA
unset GREENFED_PUBLISH GREENFED_INSECURE GREENFED_RUN_NAME GREENFED_BASELINE_RUN_NAME
mkdir -p "$results" && chown 10001:10001 "$results"
if "$docker" run --rm --entrypoint greenfed "$image" keygen --help >/dev/null 2>&1; then
  curve=1
  log "CURVE: on (greenfed keygen is in the image)"
else
  curve=0
  export GREENFED_INSECURE=1
  log "CURVE: NOT TESTED: this greenfed has no 'keygen' command; the deployment runs with GREENFED_INSECURE=1"
fi

# Peak memory of each container, from its cgroup (v2 memory.peak, v1 memory.max_usage_in_bytes,
# both include page cache) and the largest RSS seen (memory.stat, sampled every 0.5 s).
sample_memory() {
  local out=$1 id name dir peak rss
  while sleep 0.5; do
    while read -r id name; do
      dir=''
      for d in /sys/fs/cgroup/memory/docker/$id /sys/fs/cgroup/docker/$id \
               /sys/fs/cgroup/system.slice/docker-$id.scope; do
        [[ -f "$d/memory.stat" ]] && { dir=$d; break; }
      done
      [[ -n "$dir" ]] || continue
      peak=$(cat "$dir/memory.peak" 2>/dev/null || cat "$dir/memory.max_usage_in_bytes" 2>/dev/null || echo 0)
      rss=$(awk '$1 == "rss" || $1 == "anon" {print $2; exit}' "$dir/memory.stat" 2>/dev/null || echo 0)
      echo "$name $peak ${rss:-0}" >>"$out"
    done < <("$docker" ps --no-trunc --filter "label=com.docker.compose.project=$project" --format '{{.ID}} {{.Names}}' 2>/dev/null)
  done
}

# check_exits: every container of the project exited 0.
check_exits() {
  local bad=0 name code
  while read -r name code; do
    log "  $name exit $code"
    [[ "$code" == 0 ]] || bad=1
  done < <("$docker" ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}' |
             sort | while read -r n; do echo "$n $("$docker" inspect -f '{{.State.ExitCode}}' "$n")"; done)
  return "$bad"
}

stage compose-run
sample_memory "$tmp/mem.txt" &
sampler_pid=$!
timeout 1200 docker-compose -f "$compose_file" -p "$project" --profile baseline up --no-build \
  >"$tmp/up1.log" 2>&1 || { tail -40 "$tmp/up1.log"; fail "compose up (run 1) failed"; }
kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=''
check_exits || { tail -60 "$tmp/up1.log"; fail "a container of run 1 did not exit 0"; }
for f in fl/config.json fl/rounds.csv fl/nodes.csv fl/summary.json centralized/summary.json \
         report/report.md report/report.csv report/report.svg; do
  [[ -s "$results/$f" ]] || { tail -40 "$tmp/up1.log"; fail "results/$f is missing on the host"; }
done
grep -Eq '"rounds": *2\b|"completed_rounds": *2\b' "$results/fl/summary.json" ||
  fail "results/fl/summary.json does not record 2 rounds: $(head -c 600 "$results/fl/summary.json")"
if ((curve)); then
  for f in coordinator/coordinator.pub clients/client-1.pub clients/client-2.pub clients/client-3.pub; do
    [[ -s "$results/keys/$f" ]] || fail "results/keys/$f is missing"
  done
  grep -q -- '--secret-key' "$tmp/up1.log" || fail "no --secret-key in the entrypoints' command lines: CURVE not used"
  [[ $(find "$results/keys/claims" -mindepth 1 -maxdepth 1 -type d | wc -l) == 3 ]] ||
    fail "expected 3 claimed client keys in results/keys/claims"
fi
log "run 1: all containers exited 0; results/fl (2 rounds), results/centralized, results/report/report.{md,csv,svg} on the host"
if [[ -s "$tmp/mem.txt" ]]; then
  awk '{ if ($2 > p[$1]) p[$1] = $2; if ($3 > r[$1]) r[$1] = $3 }
       END { for (n in p) printf "%s: cgroup peak %.1f MiB, max sampled RSS %.1f MiB\n", n, p[n]/1048576, r[n]/1048576 }' \
    "$tmp/mem.txt" | sort | sed "s/^/$PROG: memory /"
else
  log "memory: no container cgroup found under /sys/fs/cgroup"
fi
stage_done compose-run

# 6. Second up on the same results: a new run in results/fl, the first kept as results/fl.<time>.
stage second-up
first_summary=$(sha256sum "$results/fl/summary.json" | cut -d' ' -f1)
compose down >/dev/null 2>&1
GREENFED_MAX_ROUNDS=1 timeout 900 docker-compose -f "$compose_file" -p "$project" up --no-build \
  >"$tmp/up2.log" 2>&1 || { tail -40 "$tmp/up2.log"; fail "compose up (run 2) failed"; }
check_exits || { tail -60 "$tmp/up2.log"; fail "a container of run 2 did not exit 0"; }
moved=$(find "$results" -maxdepth 1 -type d -name 'fl.*' | head -1)
[[ -n "$moved" && -s "$moved/summary.json" ]] || fail "the first run was not kept as results/fl.<time>: $(ls "$results")"
[[ "$(sha256sum "$moved/summary.json" | cut -d' ' -f1)" == "$first_summary" ]] ||
  fail "$moved/summary.json is not the first run's"
[[ -s "$results/fl/summary.json" && "$(sha256sum "$results/fl/summary.json" | cut -d' ' -f1)" != "$first_summary" ]] ||
  fail "results/fl does not hold a new run"
grep -q 'held a previous run: moved to' "$tmp/up2.log" || fail "up's output does not say where the previous run went"
log "second up: new run in results/fl, the first kept as results/${moved##*/}"
stage_done second-up

# 7. A coordinator that cannot start: its reason must be in `up`'s output.
stage failing-coordinator
compose down >/dev/null 2>&1
rc=0
GREENFED_NUM_CLIENTS=1 GREENFED_COORDINATOR_EXTRA_ARGS=--no-such-flag \
  timeout 300 docker-compose -f "$compose_file" -p "$project" up --no-build >"$tmp/up3.log" 2>&1 || rc=$?
coord=$("$docker" ps -a --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=coordinator" --format '{{.Names}}' | head -1)
[[ -n "$coord" ]] || fail "no coordinator container in the failing run"
code=$("$docker" inspect -f '{{.State.ExitCode}}' "$coord")
[[ "$code" == 2 ]] || fail "a coordinator with an unknown flag exited $code, expected 2"
grep -E 'coordinator.*no-such-flag' "$tmp/up3.log" | grep -v 'exec ' | head -2 | sed "s/^/$PROG:   up output: /" || true
grep -E 'coordinator.*no-such-flag' "$tmp/up3.log" | grep -vq 'exec ' ||
  { tail -30 "$tmp/up3.log"; fail "the coordinator's error is not in 'docker-compose up' output"; }
grep -E "the coordinator \('coordinator'\) is not running" "$tmp/up3.log" | head -1 | sed "s/^/$PROG:   up output: /" || true
grep -q "the coordinator ('coordinator') is not running" "$tmp/up3.log" ||
  { tail -30 "$tmp/up3.log"; fail "the client did not stop with 'the coordinator is not running'"; }
log "failing coordinator: exit 2, its reason shown by 'up', the client stopped at once (up exit $rc)"
stage_done failing-coordinator

stage teardown
compose --profile baseline down -v --remove-orphans >/dev/null 2>&1 || fail "compose down failed"
stage_done teardown
log "PASS: image $((size / 1000000)) MB"
