"""Start a real `city-gateway serve` for a benchmark, on its own database and Redis prefix."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql://postgres@127.0.0.1:5432")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BenchServer:
    base_url: str
    env: dict[str, str]
    pid: int

    def token(self, user_id: str, name: str | None = None) -> str:
        from gateway.core.auth import mint_token

        return mint_token(self.env["CITY_JWT_SECRET"], user_id, name)


@contextmanager
def bench_server(**settings: str) -> Iterator[BenchServer]:
    run = secrets.token_hex(4)
    db_name = f"city_bench_{run}"
    port = free_port()
    env = {
        **os.environ,
        "CITY_ENV": "test",
        "DATABASE_URL": f"{PG_BASE}/{db_name}",
        "CITY_REDIS_PREFIX": f"bench{run}:",
        "CITY_JWT_SECRET": secrets.token_urlsafe(32),
        "CITY_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        **{k.upper(): v for k, v in settings.items()},
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.1)
        yield BenchServer(base, env, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        subprocess.run(
            [
                "psql",
                f"{PG_BASE}/postgres",
                "-qc",
                f'drop database if exists "{db_name}" with (force)',
            ],
            check=False,
            capture_output=True,
        )
