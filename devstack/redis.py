"""A private Redis for `city-gateway dev`, from the machine's `redis-server`.

Used only when `REDIS_URL` does not answer. It listens on 127.0.0.1, keeps its
snapshot in `<dev dir>/redis/` (saved on exit, loaded on the next start) and is a
child of the dev command: Linux stops it if the dev command dies.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import redis.asyncio as aioredis

from devstack.procs import ChildProcess, DevError, spawn, terminate

INSTALL_HINT = (
    "Redis is not installed here (no `redis-server` on PATH).\n"
    "  Install the OS package: sudo apt-get install redis-server   (Fedora: sudo dnf"
    " install redis; macOS: brew install redis)\n"
    "  or point REDIS_URL at a Redis server that answers."
)


def find_redis_server() -> str:
    for candidate in ("redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        found = shutil.which(candidate)
        if found:
            return found
    raise DevError(INSTALL_HINT)


async def ping(url: str, timeout: float = 2.0) -> bool:
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await client.ping())
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()


class PrivateRedis(ChildProcess):
    def __init__(self, root: Path, port: int, binary: str | None = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.binary = binary or find_redis_server()
        self.log_path = self.root / "redis.log"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout: float = 20.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc = await spawn(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--dbfilename",
                "dump.rdb",
                "--save",
                "300 1",  # and on shutdown (SIGTERM), since a save point is set
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                str(self.log_path),
            ],
            cwd=self.root,
        )
        deadline = time.monotonic() + timeout
        while not await ping(self.url, timeout=0.5):
            if self._proc.returncode is not None or time.monotonic() > deadline:
                tail = ""
                if self.log_path.exists():
                    tail = self.log_path.read_text(errors="replace")[-1500:]
                await self.stop()
                raise DevError(f"redis-server did not start on port {self.port}:\n{tail}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._proc is not None:
            await terminate(self._proc, grace=10)
            self._proc = None
