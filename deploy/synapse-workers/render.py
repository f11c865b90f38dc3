"""Render Synapse's worker configuration for `deploy/compose.synapse-workers.yml`.

Run by the `synapse-init` one-shot service after deploy/synapse/render.py has
written homeserver.yaml into the same directory (the `synapse-config` volume):

    python /workers-templates/render.py /var/lib/city

It writes into OUTPUT_DIR/workers/:

- shared.yaml: what every Synapse process (main and workers) loads after
  homeserver.yaml — Redis replication, instance_map, stream_writers, the federation
  sender and the appservice sender, and the main process's listeners with the
  replication listener added (workers ignore `listeners`);
- <worker>.yaml for each worker in WORKERS (worker_app, worker_name, listeners);
- nginx.conf for the `synapse-proxy` service: each worker's endpoint patterns to
  that worker, everything else to the main process.

WORKERS below is the single source of truth, mirroring Synapse's own
docker/configure_workers_and_start.py (WORKERS_CONFIG): endpoint patterns and
shared-config roles are the ones Synapse documents (docs/workers.md) for 1.16x.
`render.py --services` prints the compose service names it expects, which
scripts/check-compose.sh compares with the compose file.

Needs only the standard library and PyYAML (both in the gateway image).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from pathlib import Path
from typing import Any

import yaml

# Every Synapse process listens for HTTP on this port inside its own container
# (client/federation endpoints, and /health on every listener) ...
HTTP_PORT = 8008
# ... and stream writers (and the main process) also on this one, for replication
# only: the proxy never routes to it.
REPLICATION_PORT = 9093
MAIN_HOST = "synapse"

# name -> roles, listener resources, endpoint patterns routed to it by the proxy.
# Compose service for worker `x_y1` is `synapse-x-y1` (see service_name()).
WORKERS: dict[str, dict[str, Any]] = {
    # The `events` stream: persisting events. Sharded by room id, so one room's
    # events keep their order (the bridge's outbox is sequential per room) while
    # rooms are spread over the persisters.
    "event_persister1": {"roles": ["events"], "resources": [], "patterns": []},
    "event_persister2": {"roles": ["events"], "resources": [], "patterns": []},
    # Creates events for client requests: every outbox send, redaction, ghost join
    # and display-name change of the bridge (PUT /rooms/{id}/send/..., /join, /profile).
    "event_creator1": {
        "roles": [],
        "resources": ["client"],
        "patterns": [
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact",
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send",
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$",
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/join/",
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/knock/",
            r"^/_matrix/client/(api/v1|r0|v3|unstable)/profile/",
        ],
    },
    # /sync for Matrix clients (Element); the bridge itself does not sync (Synapse
    # pushes to it), so this keeps human clients' long-polls off the main process.
    "synchrotron1": {
        "roles": [],
        "resources": ["client"],
        "patterns": [
            r"^/_matrix/client/(v2_alpha|r0|v3)/sync$",
            r"^/_matrix/client/(api/v1|v2_alpha|r0|v3)/events$",
            r"^/_matrix/client/(api/v1|r0|v3)/initialSync$",
            r"^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$",
        ],
    },
    # The `presence` stream (only one writer is allowed): the bridge's presence PUTs
    # for ghosts land here instead of on the main process.
    "presence1": {
        "roles": ["presence"],
        "resources": ["client"],
        "patterns": [r"^/_matrix/client/(api/v1|r0|v3|unstable)/presence/"],
    },
    # Sends PDUs/EDUs to other homeservers; no endpoints.
    "federation_sender1": {"roles": ["federation_sender"], "resources": [], "patterns": []},
    # Sends appservice transactions (PUT /_matrix/app/v1/transactions) to the
    # gateway; no endpoints. Only one instance can do this.
    "appservice1": {"roles": ["appservice"], "resources": [], "patterns": []},
}

STREAM_WRITER_ROLES = {"events", "presence", "typing", "to_device", "account_data", "receipts"}


def service_name(worker: str) -> str:
    return "synapse-" + worker.replace("_", "-")


def replication_secret() -> str:
    """Derived from MATRIX_HS_TOKEN, so the stack needs no extra secret in .env.

    Replication listeners are only on the compose network; the secret makes them
    refuse anyone else there.
    """
    token = os.environ.get("MATRIX_HS_TOKEN")
    if not token:
        sys.exit("synapse-workers: MATRIX_HS_TOKEN is required")
    return hmac.new(token.encode(), b"city-synapse-worker-replication", hashlib.sha256).hexdigest()


def shared_config(main_listeners: list[dict[str, Any]]) -> dict[str, Any]:
    instance_map: dict[str, Any] = {"main": {"host": MAIN_HOST, "port": REPLICATION_PORT}}
    stream_writers: dict[str, list[str]] = {}
    federation_senders: list[str] = []
    appservice_sender: str | None = None
    for name, w in WORKERS.items():
        for role in w["roles"]:
            if role in STREAM_WRITER_ROLES:
                stream_writers.setdefault(role, []).append(name)
                instance_map[name] = {"host": service_name(name), "port": REPLICATION_PORT}
            elif role == "federation_sender":
                federation_senders.append(name)
            elif role == "appservice":
                if appservice_sender is not None:
                    sys.exit("synapse-workers: only one appservice sender is allowed")
                appservice_sender = name
    listeners = [dict(lst) for lst in main_listeners if not _is_replication(lst)]
    listeners.append(
        {
            "port": REPLICATION_PORT,
            "bind_addresses": ["0.0.0.0"],
            "type": "http",
            "resources": [{"names": ["replication"]}],
        }
    )
    config: dict[str, Any] = {
        # Workers and the main process talk over Redis pub/sub (a separate Redis from
        # the city's: replication traffic stays off presence/fanout's Redis).
        "redis": {
            "enabled": True,
            "host": os.environ.get("SYNAPSE_REDIS_HOST", "synapse-redis"),
            "port": int(os.environ.get("SYNAPSE_REDIS_PORT", "6379")),
        },
        "worker_replication_secret": replication_secret(),
        "instance_map": instance_map,
        "stream_writers": stream_writers,
        "federation_sender_instances": federation_senders,
        # Main process's listeners (workers ignore this key).
        "listeners": listeners,
    }
    if appservice_sender:
        config["notify_appservices_from_worker"] = appservice_sender
    return config


def _is_replication(listener: dict[str, Any]) -> bool:
    return any("replication" in r.get("names", []) for r in listener.get("resources", []))


def worker_config(name: str, w: dict[str, Any]) -> dict[str, Any]:
    http: dict[str, Any] = {
        "type": "http",
        "port": HTTP_PORT,
        "bind_addresses": ["0.0.0.0"],
        "x_forwarded": True,
    }
    if w["resources"]:
        http["resources"] = [{"names": list(w["resources"]), "compress": False}]
    listeners = [http]  # /health is served on every HTTP listener
    if any(r in STREAM_WRITER_ROLES for r in w["roles"]):
        listeners.append(
            {
                "type": "http",
                "port": REPLICATION_PORT,
                "bind_addresses": ["0.0.0.0"],
                "resources": [{"names": ["replication"]}],
            }
        )
    return {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": name,
        "worker_listeners": listeners,
        "worker_log_config": "/config/log.yaml",
    }


NGINX_HEAD = """\
# GENERATED by deploy/synapse-workers/render.py. The Matrix entry point of the
# stack: each worker's endpoints to that worker, everything else to the main process.
worker_processes auto;
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 50m;
    # /sync long-polls up to its `timeout` (30 s from Element); leave headroom.
    proxy_read_timeout 120s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_buffering off;
"""


def nginx_config() -> str:
    out = [NGINX_HEAD]
    out.append(
        f"    upstream synapse_main {{\n        server {MAIN_HOST}:{HTTP_PORT};\n        keepalive 64;\n    }}\n"
    )
    locations = []
    for name, w in WORKERS.items():
        if not w["patterns"]:
            continue
        out.append(
            f"    upstream {name} {{\n        server {service_name(name)}:{HTTP_PORT};\n"
            "        keepalive 64;\n    }\n"
        )
        for pattern in w["patterns"]:
            locations.append(
                f"        location ~ {pattern} {{\n            proxy_pass http://{name};\n        }}\n"
            )
    out.append(f"    server {{\n        listen {HTTP_PORT};\n")
    out.extend(locations)
    out.append(
        "        location / {\n            proxy_pass http://synapse_main;\n        }\n    }\n}\n"
    )
    return "".join(out)


def main(out: Path) -> None:
    homeserver = out / "homeserver.yaml"
    if not homeserver.exists():
        sys.exit(f"synapse-workers: {homeserver} missing (run deploy/synapse/render.py first)")
    base = yaml.safe_load(homeserver.read_text())
    wdir = out / "workers"
    wdir.mkdir(parents=True, exist_ok=True)
    header = "# GENERATED by deploy/synapse-workers/render.py; edit WORKERS there instead.\n"
    files = {
        "shared.yaml": header + yaml.safe_dump(shared_config(base["listeners"]), sort_keys=False)
    }
    for name, w in WORKERS.items():
        files[f"{name}.yaml"] = header + yaml.safe_dump(worker_config(name, w), sort_keys=False)
    files["nginx.conf"] = nginx_config()
    for fname, text in files.items():
        path = wdir / fname
        path.write_text(text)
        path.chmod(0o644)  # read by Synapse (uid 991) and nginx through read-only mounts
    print(f"synapse-workers: wrote {', '.join(sorted(files))} to {wdir}")


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--services":
        print("\n".join(service_name(n) for n in WORKERS))
    elif len(sys.argv) == 2:
        main(Path(sys.argv[1]))
    else:
        sys.exit("usage: render.py OUTPUT_DIR | render.py --services")
