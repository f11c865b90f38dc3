"""Check that the Synapse worker configs render and that Synapse itself accepts them.

Renders deploy/synapse/homeserver.yaml.template (placeholder values) and then
deploy/synapse-workers/render.py into a temporary directory, and loads the config of
the main process and of every worker with the installed Synapse's own config parser
(`HomeServerConfig.load_config`, what `synapse.app.*` run at start): unknown worker
names in stream_writers, a stream writer missing from instance_map, bad listener
resources and the like fail here instead of at `docker compose up`.

    .venv/bin/python scripts/check-synapse-workers.py

Exits 0 when all load, 1 with the Synapse error otherwise, 0 with a note when
Synapse is not installed (the check is then skipped).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "synapse"
WORKERS = ROOT / "deploy" / "synapse-workers"


def main() -> int:
    try:
        from synapse.config.homeserver import HomeServerConfig
    except ImportError:
        print("check-synapse-workers: Synapse not installed here; skipped")
        return 0
    import synapse.config.redis

    # The Synapse image ships the `redis` extra (txredisapi, hiredis); a dev venv may
    # not. Only the import check is skipped: the redis section is still parsed.
    synapse.config.redis.check_requirements = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        values = {
            "server_name": "city.local",
            "public_baseurl": "https://city.local/",
            "postgres_user": "city",
            "postgres_password": "placeholder",
        }
        template = string.Template((BASE / "homeserver.yaml.template").read_text())
        (out / "homeserver.yaml").write_text(
            template.substitute({k: json.dumps(v) for k, v in values.items()})
        )
        env = dict(os.environ, MATRIX_HS_TOKEN="check-only-token")
        subprocess.run([sys.executable, str(WORKERS / "render.py"), str(out)], check=True, env=env)
        # Paths that live in the containers' volumes, pointed at the temp dir.
        key = out / "signing.key"
        subprocess.run(
            [sys.executable, "-m", "synapse._scripts.generate_signing_key", "-o", str(key)],
            check=True,
        )
        (out / "secret").write_text("check-only-secret")
        local = out / "local.yaml"
        local.write_text(
            json.dumps(
                {
                    "signing_key_path": str(key),
                    "registration_shared_secret_path": str(out / "secret"),
                    "media_store_path": str(out / "media"),
                    "pid_file": str(out / "hs.pid"),
                    "log_config": str(BASE / "log.yaml"),
                }
            )
        )
        base = ["-c", str(out / "homeserver.yaml"), "-c", str(out / "workers" / "shared.yaml")]
        processes = {"main": [*base, "-c", str(local)]}
        for worker in sorted((out / "workers").glob("*.yaml")):
            if worker.name == "shared.yaml":
                continue
            processes[worker.stem] = [*base, "-c", str(worker), "-c", str(local)]
        failed = 0
        for name, args in processes.items():
            noise = io.StringIO()  # Synapse's warnings about the base config
            try:
                with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
                    config = HomeServerConfig.load_config(f"check {name}", args)
            except BaseException as exc:  # ConfigError, SystemExit from argparse
                print(noise.getvalue(), end="")
                print(f"check-synapse-workers: {name}: {type(exc).__name__}: {exc}")
                failed += 1
                continue
            w = config.worker
            me = w.instance_name
            duties = [s for s in ("events", "presence") if me in getattr(w.writers, s)]
            if w.send_federation:
                duties.append("federation sender")
            if w.should_notify_appservices:
                duties.append("appservice sender")
            app = w.worker_app or "homeserver"
            print(f"check-synapse-workers: {name}: ok ({app}; {', '.join(duties) or '-'})")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
