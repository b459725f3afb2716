#!/usr/bin/env bash
# ctest deploy/compose_check: validates the deployment files without a Docker engine.
#   1. `docker compose config` / `docker-compose config` on docker/compose.yaml, with and without
#      the baseline profile (skipped with a message when neither client is installed);
#   2. a structural check with python3 + PyYAML: the scalable client, the coordinator's
#      healthcheck, depends_on, the results volume, the GREENFED_* variables, and that every
#      variable compose sets is handled by docker/entrypoint.sh and documented;
#   3. the entrypoint parses (`bash -n`) and maps variables to flags as documented (fake binary);
#   4. Dockerfile invariants: bookworm stages, non-root user, entrypoint path, no curl|sh or pip.
# Usage: tests/compose_check.sh SOURCE_DIR      Exit: 0 pass, 1 fail.
set -euo pipefail

readonly PROG=compose_check.sh
(($# == 1)) || { echo "usage: $PROG SOURCE_DIR" >&2; exit 2; }
src=$(cd -- "$1" && pwd)
readonly compose=$src/docker/compose.yaml
readonly entrypoint=$src/docker/entrypoint.sh
readonly dockerfile=$src/docker/Dockerfile
readonly doc=$src/docs/deployment.md
fail() { echo "$PROG: FAIL: $*" >&2; exit 1; }

for f in "$compose" "$entrypoint" "$dockerfile" "$doc"; do
  [[ -f "$f" ]] || fail "missing $f"
done

# 1. The Compose implementation's own validation (the compose-spec schema).
compose_cmd=()
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
fi
if ((${#compose_cmd[@]})); then
  # A clean environment, so a caller's GREENFED_* values cannot make the check pass or fail.
  clean_env=(env -i PATH="$PATH" HOME="${HOME:-/tmp}")
  "${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" config -q ||
    fail "'${compose_cmd[*]} -f $compose config' rejected the file"
  "${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" --profile baseline config -q ||
    fail "'${compose_cmd[*]} --profile baseline config' rejected the file"
  # Own-data mode (docs/deployment.md, "Own data"): the override with a volume per client.
  own_data=$src/docker/compose.own-data.yaml
  "${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" -f "$own_data" config -q ||
    fail "'${compose_cmd[*]} -f $compose -f $own_data config' rejected the override"
  own_cfg=$("${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" -f "$own_data" config)
  for want in "GREENFED_PARTITION: none" "--task digits --data /data/digits.csv" "own-data/client-1:/data:ro" \
              "own-data/client-2:/data:ro"; do
    grep -qF -- "$want" <<<"$own_cfg" || fail "$own_data: the merged config lacks '$want'"
  done
  echo "$PROG: compose.own-data.yaml: coordinator --partition none, one data volume per client"
  services=$("${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" --profile baseline config --services | sort | tr '\n' ' ')
  [[ "$services" == "centralized client coordinator keys report " ]] ||
    fail "services with --profile baseline: '$services'"
  echo "$PROG: '${compose_cmd[*]} config' accepts $compose (default and baseline profile)"
else
  echo "$PROG: neither 'docker compose' nor 'docker-compose' is installed: skipping the config check"
fi

# 2. Structure.
python3 -c 'import yaml' 2>/dev/null ||
  fail "python3 cannot import yaml; scripts/install-deps.sh installs python3-yaml"
python3 - "$compose" "$entrypoint" "$doc" <<'EOF' || fail "structural check of $compose failed"
import re, sys, yaml

compose_path, entrypoint_path, doc_path = sys.argv[1:]
raw = open(compose_path).read()
cfg = yaml.safe_load(raw)  # resolves the x-* anchors and << merge keys
# docker/keys.sh (greenfed-keys) wraps the entrypoint for keys, coordinator and client.
entrypoint = open(entrypoint_path).read() + open(entrypoint_path.replace("entrypoint.sh", "keys.sh")).read()
doc = open(doc_path).read()
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

services = cfg.get("services", {})
for name in ("coordinator", "client"):
    check(name in services, f"service '{name}' is missing")
if errors:
    sys.exit("\n".join(errors))
coord, client = services["coordinator"], services["client"]

def env(service):
    e = service.get("environment", {})
    if isinstance(e, list):
        e = dict(item.split("=", 1) if "=" in item else (item, None) for item in e)
    return e

# Scalable clients: no fixed name, no host port, restarted on failure, started after a healthy
# coordinator.
check("container_name" not in client, "client has container_name: it could not be scaled")
check(not client.get("ports"), "client publishes ports: a second replica would collide")
check(client.get("restart") == "on-failure:5", f"client restart is {client.get('restart')!r}, expected 'on-failure:5' (bounded retries)")
dep = client.get("depends_on", {})
check(isinstance(dep, dict) and dep.get("coordinator", {}).get("condition") == "service_started",
      f"client depends_on must be coordinator: condition: service_started (so `up` shows the coordinator's errors), got {dep!r}")
hc = coord.get("healthcheck", {})
test = hc.get("test", [])
check("healthcheck" in " ".join(test if isinstance(test, list) else [test]),
      f"coordinator healthcheck must run the entrypoint's healthcheck, got {test!r}")
check(all(k in hc for k in ("interval", "timeout", "retries")), f"healthcheck lacks interval/timeout/retries: {hc}")

# Results: every greenfed service mounts the host's ./results (compose file in docker/).
for name, svc in services.items():
    vols = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in svc.get("volumes", [])]
    check("${GREENFED_RESULTS:-../results}:/results" in vols, f"service '{name}' does not bind ${{GREENFED_RESULTS:-../results}} to /results: {vols}")
    check(env(svc).get("GREENFED_ROLE") == name, f"service '{name}' has GREENFED_ROLE={env(svc).get('GREENFED_ROLE')!r}")

# The variables the deployment contract names.
shared = ["GREENFED_NUM_CLIENTS", "GREENFED_MIN_FIT_CLIENTS", "GREENFED_PARTITION", "GREENFED_ALPHA",
          "GREENFED_TARGET_ACCURACY", "GREENFED_MAX_ROUNDS", "GREENFED_LOCAL_EPOCHS", "GREENFED_LR",
          "GREENFED_SEED", "GREENFED_COUNTRY", "GREENFED_PUE", "GREENFED_METER",
          "GREENFED_WATTS_PER_CORE", "GREENFED_DATA_DIR", "GREENFED_MAX_TRAIN_EXAMPLES",
          "GREENFED_MAX_TEST_EXAMPLES", "GREENFED_EXTRA_ARGS"]
for var in shared:
    check(var in env(coord), f"coordinator environment lacks {var}")
    check(var in env(client), f"client environment lacks {var}")
for var in ("GREENFED_BIND", "GREENFED_RUN_DIR"):
    check(var in env(coord), f"coordinator environment lacks {var}")
check(env(client).get("GREENFED_COORDINATOR") == "tcp://coordinator:5555",
      f"client GREENFED_COORDINATOR is {env(client).get('GREENFED_COORDINATOR')!r}")
check(str(env(coord).get("GREENFED_BIND", "")).endswith(":5555"), "coordinator must bind port 5555")

# Baseline profile: centralized after the federated run, then the report.
for name in ("centralized", "report"):
    check(name in services and services[name].get("profiles") == ["baseline"],
          f"service '{name}' must exist with profiles: [baseline]")
if "report" in services:
    check(services["report"].get("depends_on", {}).get("centralized", {}).get("condition")
          == "service_completed_successfully", "report must wait for centralized to complete")
if "centralized" in services:
    check(services["centralized"].get("depends_on", {}).get("coordinator", {}).get("condition")
          == "service_completed_successfully", "centralized must wait for the federated run to complete")
for name, svc in services.items():
    check(svc.get("restart") in ("no", "on-failure", "on-failure:5"),
          f"service '{name}' restart {svc.get('restart')!r}: 'always'/'unless-stopped' would outlive the run")

# Every variable a container receives is handled by the entrypoint and documented; variables
# only used for interpolation (${GREENFED_UID}, ...) must be documented.
env_keys = {k for svc in services.values() for k in env(svc)}
for var in sorted(env_keys):
    check(re.search(rf"\b{var}\b", entrypoint), f"{var} is set in compose but not handled in entrypoint.sh")
    check(var in doc, f"{var} is set in compose but not documented in docs/deployment.md")
for var in sorted(set(re.findall(r"\$\{(GREENFED_[A-Z0-9_]+)", raw)) - env_keys):
    check(var in doc, f"interpolation variable {var} is not documented in docs/deployment.md")
for var in sorted(set(re.findall(r"\b(GREENFED_[A-Z0-9_]+)\b", entrypoint))):
    check(var in doc, f"{var} (entrypoint.sh) is not documented in docs/deployment.md")

if errors:
    sys.exit("\n".join(errors))
print(f"compose structure ok: {len(services)} services, {len(env_keys)} GREENFED_* variables handled")
EOF

# 3. The entrypoint, against a fake binary that prints its argv.
bash -n "$entrypoint" || fail "bash -n $entrypoint"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/greenfed-compose-check.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
printf '#!/bin/sh\nprintf "%%s|" "$@"\n' >"$tmp/fake"
chmod +x "$tmp/fake"
run_ep() { env -i PATH="$PATH" GREENFED_BIN="$tmp/fake" "$@" bash "$entrypoint" 2>"$tmp/err"; }
got=$(run_ep GREENFED_ROLE=coordinator GREENFED_NUM_CLIENTS=4 GREENFED_LR= GREENFED_COUNTRY=FRA \
  GREENFED_EXTRA_ARGS="--x 1")
[[ "$got" == "coordinator|--num-clients|4|--country|FRA|--x|1|" ]] ||
  fail "coordinator flags: got '$got' (an empty variable must add no flag)"
got=$(run_ep GREENFED_ROLE=client GREENFED_COORDINATOR=tcp://coordinator:5555 GREENFED_NUM_CLIENTS=4 \
  GREENFED_RUN_DIR=/results/fl GREENFED_PUE=1.2)
[[ "$got" == "client|--connect|tcp://coordinator:5555|--num-clients|4|--pue|1.2|" ]] ||
  fail "client flags: got '$got' (coordinator-only variables must not reach a client)"
got=$(run_ep GREENFED_ROLE=coordinator GREENFED_SECRET_KEY=/keys/coordinator.key \
  GREENFED_ALLOW_CLIENTS=/keys/clients GREENFED_SERVER_KEY=/keys/x.pub)
[[ "$got" == "coordinator|--secret-key|/keys/coordinator.key|--allow-clients|/keys/clients|" ]] ||
  fail "coordinator key flags: got '$got' (GREENFED_SERVER_KEY is the client's)"
got=$(run_ep GREENFED_ROLE=client GREENFED_SECRET_KEY=/keys/c.key GREENFED_SERVER_KEY=/keys/coordinator.pub \
  GREENFED_ALLOW_CLIENTS=/keys/clients)
[[ "$got" == "client|--secret-key|/keys/c.key|--server-key|/keys/coordinator.pub|" ]] ||
  fail "client key flags: got '$got' (GREENFED_ALLOW_CLIENTS is the coordinator's)"
got=$(run_ep GREENFED_ROLE=client GREENFED_INSECURE=1)
[[ "$got" == "client|--insecure|" ]] || fail "GREENFED_INSECURE=1: got '$got'"
got=$(run_ep GREENFED_ROLE=coordinator GREENFED_INSECURE=0)
[[ "$got" == "coordinator|" ]] || fail "GREENFED_INSECURE=0 must add no flag: got '$got'"
rc=0
run_ep GREENFED_ROLE=client GREENFED_INSECURE=maybe >/dev/null || rc=$?
((rc == 2)) && grep -q "GREENFED_INSECURE='maybe' is not a boolean" "$tmp/err" ||
  fail "GREENFED_INSECURE=maybe: exit $rc, stderr '$(cat "$tmp/err")' (expected 2 and a message)"
rc=0
run_ep GREENFED_ROLE=bogus >/dev/null || rc=$?
((rc == 2)) && grep -q "unknown role 'bogus'" "$tmp/err" ||
  fail "unknown role: exit $rc, stderr '$(cat "$tmp/err")' (expected 2 and a message)"
echo "$PROG: entrypoint maps variables (and CURVE keys) to flags; unknown role and bad boolean exit 2"

# 4. Dockerfile invariants.
grep -Eq '^FROM debian:bookworm AS build' "$dockerfile" || fail "build stage must be FROM debian:bookworm"
grep -Eq '^FROM scratch AS runtime' "$dockerfile" || fail "runtime stage must be FROM scratch (docker/runtime-rootfs.sh)"
grep -Eq '^USER greenfed' "$dockerfile" || fail "runtime must run as user greenfed"
grep -Eq '^ENTRYPOINT \["/usr/local/bin/greenfed-entrypoint"\]' "$dockerfile" ||
  fail "ENTRYPOINT must be /usr/local/bin/greenfed-entrypoint (the healthcheck calls it)"
grep -Eq 'GREENFED_BUILD_TESTS=OFF' "$dockerfile" || fail "image build must disable tests"
if grep -Ev '^[[:space:]]*#' "$dockerfile" | grep -Eqi 'curl[^|]*\|[[:space:]]*(ba)?sh|pip3? install'; then
  fail "Dockerfile uses curl|sh or pip"
fi
# 5. Second `up` and CURVE keys for Compose, without an engine (docker/entrypoint.sh's
#    GREENFED_RUN_DIR_ROTATE, docker/keys.sh). The engine run is scripts/compose_e2e.sh.
check_rotation_and_keys() {
  local d=$tmp/rot out rc
  mkdir -p "$d/results/fl" && echo first >"$d/results/fl/rounds.csv"
  # Without rotation the directory stays (the binary refuses a used one itself).
  run_ep GREENFED_ROLE=coordinator GREENFED_RUN_DIR="$d/results/fl" >/dev/null ||
    fail "coordinator without GREENFED_RUN_DIR_ROTATE failed: $(cat "$tmp/err")"
  [[ -f "$d/results/fl/rounds.csv" ]] || fail "the run dir moved without GREENFED_RUN_DIR_ROTATE"
  run_ep GREENFED_ROLE=coordinator GREENFED_RUN_DIR="$d/results/fl" GREENFED_RUN_DIR_ROTATE=1 >/dev/null ||
    fail "coordinator with GREENFED_RUN_DIR_ROTATE=1 failed: $(cat "$tmp/err")"
  out=$(find "$d/results" -maxdepth 1 -name 'fl.*')
  [[ ! -e "$d/results/fl" && -n "$out" && "$(cat "$out/rounds.csv")" == first ]] ||
    fail "GREENFED_RUN_DIR_ROTATE=1 did not move results/fl to results/fl.<time>: $(ls "$d/results")"
  grep -q "moved to $out" "$tmp/err" || fail "rotation is not reported on stderr: $(cat "$tmp/err")"
  # A second previous run with the same timestamp gets its own name; an empty dir is left alone.
  mkdir -p "$d/results/fl" && echo second >"$d/results/fl/rounds.csv" && touch -r "$out" "$d/results/fl"
  run_ep GREENFED_ROLE=centralized GREENFED_RUN_DIR="$d/results/fl" GREENFED_RUN_DIR_ROTATE=1 >/dev/null ||
    fail "centralized rotation failed: $(cat "$tmp/err")"
  [[ "$(cat "$out-2/rounds.csv" 2>/dev/null)" == second ]] || fail "same-second rotation: $(ls "$d/results")"
  mkdir -p "$d/results/fl"
  run_ep GREENFED_ROLE=coordinator GREENFED_RUN_DIR="$d/results/fl" GREENFED_RUN_DIR_ROTATE=1 >/dev/null &&
    [[ -d "$d/results/fl" ]] || fail "an empty run dir must not be rotated"

  # keys.sh against a fake `greenfed keygen`.
  cat >"$tmp/fakekg" <<'FAKE'
#!/bin/bash
if [[ "$1" == keygen ]]; then
  [[ "$2" == --help ]] && exit 0
  out=$3 name=$5
  mkdir -p "$out" && echo "secret-$name-$RANDOM" >"$out/$name.key" && echo "public-$name-$RANDOM" >"$out/$name.pub"
  exit 0
fi
printf '%s|' "$@"
FAKE
  chmod +x "$tmp/fakekg"
  # keys VAR=VALUE... COMMAND: docker/keys.sh COMMAND in a clean environment plus the VARs.
  keys() {
    local vars=()
    while [[ "$1" == *=* ]]; do vars+=("$1"); shift; done
    env -i PATH="$PATH" GREENFED_BIN="$tmp/fakekg" GREENFED_ENTRYPOINT="$entrypoint" \
      GREENFED_KEYS_DIR="$d/keys" "${vars[@]}" bash "$src/docker/keys.sh" "$@" 2>"$tmp/err"
  }
  keys GREENFED_NUM_CLIENTS=2 HOSTNAME=x generate >/dev/null || fail "keys generate: $(cat "$tmp/err")"
  local pub1
  pub1=$(cat "$d/keys/clients/client-1.pub")
  [[ -s "$d/keys/coordinator/coordinator.key" && -s "$d/keys/clients/client-2.key" ]] ||
    fail "keys generate did not write coordinator + 2 client keys"
  keys GREENFED_NUM_CLIENTS=3 generate >/dev/null || fail "keys generate (2nd): $(cat "$tmp/err")"
  [[ "$(cat "$d/keys/clients/client-1.pub")" == "$pub1" && -s "$d/keys/clients/client-3.key" ]] ||
    fail "a second generate must keep existing keys and add the missing one"
  out=$(keys GREENFED_ROLE=client GREENFED_BIN="$tmp/fake" HOSTNAME=a client)
  [[ "$out" == "client|--connect|"* || "$out" == "client|"* ]] || fail "keys client: got '$out' ($(cat "$tmp/err"))"
  grep -q "client-1.key" "$tmp/err" || fail "first client did not claim client-1: $(cat "$tmp/err")"
  keys GREENFED_BIN="$tmp/fake" HOSTNAME=b client >/dev/null && grep -q "client-2.key" "$tmp/err" ||
    fail "second client did not claim client-2: $(cat "$tmp/err")"
  keys GREENFED_BIN="$tmp/fake" HOSTNAME=a client >/dev/null && grep -q "client-1.key" "$tmp/err" ||
    fail "a restarted client (same hostname) must keep client-1: $(cat "$tmp/err")"
  keys GREENFED_BIN="$tmp/fake" HOSTNAME=c client >/dev/null || fail "third client: $(cat "$tmp/err")"
  rc=0
  keys GREENFED_BIN="$tmp/fake" HOSTNAME=d client >/dev/null || rc=$?
  ((rc == 1)) && grep -q "no free client key" "$tmp/err" ||
    fail "a 4th client with 3 keys: exit $rc, '$(cat "$tmp/err")' (expected 1, 'no free client key')"
  rc=0
  env -i PATH="$PATH" GREENFED_BIN=/bin/false GREENFED_KEYS_DIR="$d/nokeygen" GREENFED_NUM_CLIENTS=1 \
    bash "$src/docker/keys.sh" generate 2>"$tmp/err" || rc=$?
  ((rc == 1)) && grep -q "GREENFED_INSECURE=1" "$tmp/err" ||
    fail "generate without keygen: exit $rc, '$(cat "$tmp/err")' (expected 1 naming GREENFED_INSECURE=1)"
  keys GREENFED_INSECURE=1 GREENFED_NUM_CLIENTS=1 generate >/dev/null || fail "insecure generate must succeed"
  echo "$PROG: GREENFED_RUN_DIR_ROTATE keeps the previous run; keys.sh keeps keys, one per client"
}
check_rotation_and_keys

echo "$PROG: PASS"
