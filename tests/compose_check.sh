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
  services=$("${clean_env[@]}" "${compose_cmd[@]}" -f "$compose" --profile baseline config --services | sort | tr '\n' ' ')
  [[ "$services" == "centralized client coordinator report " ]] ||
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
entrypoint = open(entrypoint_path).read()
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
check(isinstance(dep, dict) and dep.get("coordinator", {}).get("condition") == "service_healthy",
      f"client depends_on must be coordinator: condition: service_healthy, got {dep!r}")
hc = coord.get("healthcheck", {})
test = hc.get("test", [])
check("healthcheck" in " ".join(test if isinstance(test, list) else [test]),
      f"coordinator healthcheck must run the entrypoint's healthcheck, got {test!r}")
check(all(k in hc for k in ("interval", "timeout", "retries")), f"healthcheck lacks interval/timeout/retries: {hc}")

# Results: every greenfed service mounts the host's ./results (compose file in docker/).
for name, svc in services.items():
    vols = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in svc.get("volumes", [])]
    check("../results:/results" in vols, f"service '{name}' does not bind ../results to /results: {vols}")
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
grep -Eq '^FROM debian:bookworm-slim' "$dockerfile" || fail "runtime stage must be FROM debian:bookworm-slim"
grep -Eq '^USER greenfed' "$dockerfile" || fail "runtime must run as user greenfed"
grep -Eq '^ENTRYPOINT \["/usr/local/bin/greenfed-entrypoint"\]' "$dockerfile" ||
  fail "ENTRYPOINT must be /usr/local/bin/greenfed-entrypoint (the healthcheck calls it)"
grep -Eq 'GREENFED_BUILD_TESTS=OFF' "$dockerfile" || fail "image build must disable tests"
if grep -Ev '^[[:space:]]*#' "$dockerfile" | grep -Eqi 'curl[^|]*\|[[:space:]]*(ba)?sh|pip3? install'; then
  fail "Dockerfile uses curl|sh or pip"
fi
echo "$PROG: PASS"
