#!/usr/bin/env bash
# Validate the compose files without a Docker engine (CI has none):
#
#   1. docker-compose.yml alone;
#   2. docker-compose.yml + deploy/compose.synapse-workers.yml with --profile synapse-workers;
#   3. the merged workers stack against deploy/synapse-workers/render.py: every worker
#      it renders has its service (in the profile, loading its own config file), every
#      depends_on target exists, the gateway talks to Synapse through synapse-proxy;
#   4. the rendered Synapse configs load in Synapse's own config parser
#      (scripts/check-synapse-workers.py; skipped when Synapse is not installed) and the
#      rendered nginx.conf passes `nginx -t` (skipped when nginx is not installed).
#
# Uses `docker compose` (v2 plugin) when present, else `docker-compose` (v1.29, Debian's
# package: `apt-get install -y docker-compose`), which parses profiles and the
# depends_on conditions used here and validates against the compose schema without
# talking to an engine. Exits non-zero on the first error; 2 when no validator exists.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    echo "check-compose: neither 'docker compose' nor 'docker-compose' is installed" >&2
    echo "check-compose: apt-get install -y docker-compose" >&2
    exit 2
fi
PY=${PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Placeholders for the secrets the compose files require (`${VAR:?...}`); never used.
cat >"$tmp/env" <<'EOF'
POSTGRES_PASSWORD=check-compose-placeholder
CITY_JWT_SECRET=check-compose-placeholder
CITY_INTERNAL_TOKEN=check-compose-placeholder
MATRIX_AS_TOKEN=check-compose-placeholder
MATRIX_HS_TOKEN=check-compose-placeholder
EOF
base=("${COMPOSE[@]}" --env-file "$tmp/env" -f docker-compose.yml)
workers=("${base[@]}" -f deploy/compose.synapse-workers.yml --profile synapse-workers)

echo "check-compose: using ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -1))"
"${base[@]}" config -q
echo "check-compose: docker-compose.yml ok"
"${workers[@]}" config >"$tmp/merged.yml"
echo "check-compose: docker-compose.yml + deploy/compose.synapse-workers.yml (profile synapse-workers) ok"

"$PY" deploy/synapse-workers/render.py --services >"$tmp/services"
"$PY" - "$tmp/merged.yml" "$tmp/services" <<'EOF'
import sys

import yaml

merged = yaml.safe_load(open(sys.argv[1]))
services = merged["services"]
expected = open(sys.argv[2]).read().split()
errors = []
for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    for dep in deps if isinstance(deps, (list, dict)) else []:
        if dep not in services:
            errors.append(f"{name}: depends_on undefined service {dep!r}")
for svc_name in expected + ["synapse-redis", "synapse-proxy"]:
    svc = services.get(svc_name)
    if svc is None:
        errors.append(f"{svc_name}: missing (deploy/synapse-workers/render.py expects it)")
        continue
    if "synapse-workers" not in (svc.get("profiles") or []):
        errors.append(f"{svc_name}: not in profile synapse-workers")
for svc_name in expected:
    svc = services.get(svc_name)
    if svc is None:
        continue
    worker = svc_name.removeprefix("synapse-").replace("-", "_")
    cmd = " ".join(svc.get("command") or [])
    if f"/config/workers/{worker}.yaml" not in cmd or "/config/workers/shared.yaml" not in cmd:
        errors.append(f"{svc_name}: command does not load shared.yaml and {worker}.yaml")
extra = sorted(
    n for n in services
    if n.startswith("synapse-") and n not in expected
    and n not in ("synapse-init", "synapse-redis", "synapse-proxy")
)
if extra:
    errors.append(f"services with no worker config in render.py: {extra}")
if "/config/workers/shared.yaml" not in " ".join(services["synapse"].get("command") or []):
    errors.append("synapse (main): command does not load workers/shared.yaml")
url = (services["gateway"].get("environment") or {}).get("MATRIX_HOMESERVER_URL")
if url != "http://synapse-proxy:8008":
    errors.append(f"gateway: MATRIX_HOMESERVER_URL is {url!r}, not the proxy")
for e in errors:
    print(f"check-compose: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"check-compose: {len(expected)} Synapse workers wired (render.py <-> compose) ok")
EOF

"$PY" scripts/check-synapse-workers.py

if command -v nginx >/dev/null 2>&1; then
    # Render once more to get nginx.conf; compose service names do not resolve here,
    # so point the upstreams at 127.0.0.1 for the syntax check.
    cp deploy/synapse/homeserver.yaml.template "$tmp/homeserver.yaml"
    sed -i 's/^\(server_name\|public_baseurl\): .*/\1: x/' "$tmp/homeserver.yaml"
    MATRIX_HS_TOKEN=check "$PY" deploy/synapse-workers/render.py "$tmp" >/dev/null
    sed -E 's/server synapse[a-z0-9-]*:/server 127.0.0.1:/' "$tmp/workers/nginx.conf" >"$tmp/nginx.conf"
    nginx -t -q -c "$tmp/nginx.conf"
    echo "check-compose: rendered nginx.conf ok (nginx -t)"
else
    echo "check-compose: nginx not installed; nginx.conf syntax not checked"
fi
echo "check-compose: all ok"
