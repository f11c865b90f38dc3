"""`city-gateway dev` for real: the whole stack from a temporary directory.

The dev command runs as a separate process, as a newcomer would run it, against
this machine's PostgreSQL and Redis (a database and a key prefix of its own, so
other test runs are untouched) with Synapse and the gateway on free ports. A city
user and a Matrix client (matrix-nio) then talk through it, Ctrl-C stops it, and
nothing it started may be left behind. The private PostgreSQL/Redis used when none
answers are tested on their own below.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nio
import pytest
import redis.asyncio as aioredis

from devstack.procs import port_in_use
from tests.conftest import PG_BASE, REDIS_PREFIX, REDIS_URL, RUN_ID
from tests.servers import REPO, free_port, wait_until

READY = "city-gateway dev: ready"
GENERAL = "room_city_general"


class DevRun:
    """One `city-gateway dev` process and everything it printed."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.cwd = cwd
        self.env = env
        self.args = args
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> DevRun:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.app.cli",
            "dev",
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a terminal of its own: killpg = Ctrl-C
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def ready(self, timeout: float = 150) -> None:
        def done() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"dev exited ({self.proc.returncode}):\n{self.output}")
            return any(line.startswith(READY) for line in self.lines)

        await wait_until(done, timeout=timeout, interval=0.1)

    def find(self, pattern: str) -> re.Match[str]:
        match = re.search(pattern, self.output)
        assert match, f"{pattern!r} not in:\n{self.output}"
        return match

    def started_pids(self) -> list[int]:
        started = self.find(r"city-dev: started: (.*)").group(1)
        return [int(p) for p in re.findall(r"\b(\d+)\b", started)]

    async def ctrl_c(self, timeout: float = 60) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        assert self._reader is not None
        await self._reader
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is not running


@pytest.fixture
async def dev_env(redis_client: aioredis.Redis) -> AsyncIterator[dict[str, str]]:
    """Environment for a dev run: own database, own Redis prefix, free ports."""
    dbname = f"city_devtest_{RUN_ID}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CITY_", "MATRIX_", "DATABASE_", "REDIS_", "NATS_"))
    }
    env.update(
        {
            "DATABASE_URL": f"{PG_BASE}/{dbname}",
            "REDIS_URL": REDIS_URL,
            "CITY_REDIS_PREFIX": f"{REDIS_PREFIX}dev:",
            "CITY_DEV_PORT": str(free_port()),
            "CITY_DEV_SYNAPSE_PORT": str(free_port()),
            "PYTHONPATH": str(REPO),
        }
    )
    yield env
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await admin.execute(f'drop database if exists "{dbname}" with (force)')
    finally:
        await admin.close()


class Element:
    """The demo Matrix account, driven with matrix-nio as Element would."""

    def __init__(self, homeserver: str, user_id: str) -> None:
        self.client = nio.AsyncClient(homeserver, user_id)
        self._since: str | None = None
        self.events: list[dict[str, Any]] = []

    async def login(self, password: str) -> None:
        response = await self.client.login(password)
        assert isinstance(response, nio.LoginResponse), response

    async def join(self, alias: str) -> str:
        response = await self.client.join(alias)
        assert isinstance(response, nio.JoinResponse), response
        return response.room_id

    async def wait_for(self, room_id: str, body: str, timeout: float = 30) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            for event in self.events:
                if (event.get("content") or {}).get("body") == body:
                    return event
            response = await self.client.sync(timeout=500, since=self._since)
            assert isinstance(response, nio.SyncResponse), response
            self._since = response.next_batch
            room = response.rooms.join.get(room_id)
            if room is not None:
                self.events.extend(e.source for e in room.timeline.events)
            return None

        event: dict[str, Any] = await wait_until(found, timeout=timeout, interval=0)
        return event

    async def send(self, room_id: str, body: str) -> None:
        content = {"msgtype": "m.text", "body": body}
        response = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(response, nio.RoomSendResponse), response


@pytest.mark.timeout(400)
async def test_make_dev_runs_the_city_and_stops_cleanly(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    port, synapse_port = int(dev_env["CITY_DEV_PORT"]), int(dev_env["CITY_DEV_SYNAPSE_PORT"])
    api = f"http://127.0.0.1:{port}"
    dev = await DevRun(tmp_path, dev_env).start()
    try:
        await dev.ready()
        token = dev.find(r"export CITY_TOKEN=(\S+)").group(1)
        matrix_user, password = dev.find(r"user (@\S+)\s+password (\S+)").groups()
        assert matrix_user == "@demo:city.local"
        assert "#city_general:city.local" in dev.output
        assert f"http://127.0.0.1:{synapse_port}" in dev.output
        pids = dev.started_pids()
        assert len(pids) == 2, dev.output  # Synapse and the gateway (PG/Redis are the machine's)
        env_file = (tmp_path / ".city-dev" / "env").read_text()
        assert "CITY_ENV=development" in env_file and "LOG_FORMAT=human" in env_file
        assert f"MATRIX_APPSERVICE_URL=http://127.0.0.1:{port}" in env_file

        # City → Matrix: the demo city user posts; the demo Matrix account sees it.
        element = Element(f"http://127.0.0.1:{synapse_port}", matrix_user)
        try:
            await element.login(password)
            room_id = await element.join("#city_general:city.local")
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                auth = {"Authorization": f"Bearer {token}"}
                posted = await http.post(
                    f"/city/rooms/{GENERAL}/messages",
                    json={"body": "hi from the city"},
                    headers=auth,
                )
                assert posted.status_code == 201, posted.text
                event = await element.wait_for(room_id, "hi from the city")
                assert event["sender"] == "@city_u_demo:city.local"

                # Matrix → City.
                await element.send(room_id, "hi from element")

                async def in_city() -> dict[str, Any] | None:
                    page = (await http.get(f"/city/rooms/{GENERAL}", headers=auth)).json()
                    return next(
                        (m for m in page["messages"] if m["body"] == "hi from element"), None
                    )

                reply = await wait_until(in_city, timeout=30)
                assert reply["author_matrix_id"] == matrix_user
                metrics = (await http.get("/metrics")).text
                assert re.search(r"^city_matrix_send_seconds_count [1-9]", metrics, re.M)
        finally:
            await element.client.close()

        assert await dev.ctrl_c() == 0, dev.output
        assert "city-dev: stopped" in dev.output
        await wait_until(lambda: all(gone(pid) for pid in pids), timeout=10)
        assert not port_in_use(port) and not port_in_use(synapse_port)

        # Again: the same data and secrets (the first token still works).
        again = await DevRun(tmp_path, dev_env).start()
        try:
            await again.ready()
            assert (tmp_path / ".city-dev" / "env").read_text() == env_file
            assert again.find(r"user (@\S+)\s+password (\S+)").groups() == (matrix_user, password)
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                page = await http.get(
                    f"/city/rooms/{GENERAL}", headers={"Authorization": f"Bearer {token}"}
                )
                assert page.status_code == 200
                bodies = [m["body"] for m in page.json()["messages"]]
                assert "hi from the city" in bodies and "hi from element" in bodies
            pids = again.started_pids()
            # SIGTERM (a service manager, `docker stop`) stops it the same way.
            assert again.proc is not None
            again.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(again.proc.wait(), 60) == 0
            await wait_until(lambda: all(gone(pid) for pid in pids), timeout=10)
        finally:
            await again.kill()
    finally:
        await dev.kill()
    # The machine's services were used, never stopped.
    assert await aioredis.from_url(REDIS_URL).ping()
    conn = await asyncpg.connect(f"{PG_BASE}/postgres")
    await conn.close()


async def test_a_taken_port_is_named(tmp_path: Path, dev_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = await DevRun(tmp_path, {**dev_env, "CITY_DEV_PORT": str(port)}).start()
        assert dev.proc is not None
        code = await asyncio.wait_for(dev.proc.wait(), 60)
        await asyncio.sleep(0)  # let the reader take the last lines
        assert dev._reader is not None
        await dev._reader
    assert code == 1
    assert f"port {port} is already in use" in dev.output
    assert "CITY_DEV_PORT" in dev.output
    assert not (tmp_path / ".city-dev" / "synapse").exists()  # nothing was started


@pytest.fixture
def shared_tmp() -> AsyncIterator[Path]:
    """A temp dir the `postgres` user can enter (as root, the cluster runs as it)."""
    import shutil

    path = Path(tempfile.mkdtemp(prefix="city-devstack-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(120)
async def test_private_postgres_and_redis(shared_tmp: Path) -> None:
    """What `make dev` starts when DATABASE_URL / REDIS_URL do not answer."""
    from devstack.postgres import PrivatePostgres
    from devstack.redis import PrivateRedis

    pg = PrivatePostgres(shared_tmp / "postgres", free_port())
    redis = PrivateRedis(shared_tmp / "redis", free_port())
    try:
        await pg.start()
        await redis.start()
        conn = await asyncpg.connect(pg.url("postgres"))
        try:
            await conn.execute("create database city")
        finally:
            await conn.close()
        client = aioredis.from_url(redis.url)
        await client.set("k", "v")
        await client.aclose()
        redis_pid = redis.pid
        assert redis_pid is not None
    finally:
        await redis.stop()
        await pg.stop()
    assert gone(redis_pid)
    assert not port_in_use(pg.port) and not port_in_use(redis.port)

    # Started again: initdb is not repeated and the data is still there.
    pg_again = PrivatePostgres(shared_tmp / "postgres", pg.port)
    redis_again = PrivateRedis(shared_tmp / "redis", redis.port)
    try:
        await pg_again.start()
        await redis_again.start()
        conn = await asyncpg.connect(pg_again.url("city"))
        await conn.close()
        client = aioredis.from_url(redis_again.url)
        assert await client.get("k") == b"v"
        await client.aclose()
    finally:
        await redis_again.stop()
        await pg_again.stop()
    assert not port_in_use(pg.port)
