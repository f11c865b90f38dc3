"""`city-gateway serve --workers 2`: two worker processes behind one port.

The kernel hands each new connection to whichever worker accepts it first, so a test
cannot choose the worker; it opens sockets until both workers hold some, and learns
which worker holds a socket from Redis (`city:ws:sockets:{user}` holds "process id|
socket id" for every open socket; each worker's Runtime has its own process id).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import TypeVar

import pytest
import redis.asyncio as aioredis

from gateway.app import workers
from tests.conftest import REDIS_PREFIX, make_settings
from tests.realtime.test_presence_ws import (
    BEAT_URL,
    FAST,
    SERVICE,
    PresenceClient,
    barrier,
    presence_client,
)
from tests.realtime.test_ws_rooms import (
    GENERAL,
    Client,
    _is_message,
    client,
    close_code,
)
from tests.servers import GatewayProcess, wait_until

C = TypeVar("C")
MAX_SOCKETS = 60  # opened one by one until both workers hold some
# A request on a new connection goes to whichever worker accepts it.
CLOSE = {"Connection": "close"}


@pytest.fixture
async def two_workers(clean: None) -> AsyncIterator[GatewayProcess]:
    gw = GatewayProcess(make_settings(**FAST), workers=2)
    try:
        await gw.start()

        async def ready() -> bool:
            return (await gw.http.get("/readyz")).status_code == 200

        await wait_until(ready, timeout=15)
        yield gw
    finally:
        if gw.proc is not None:
            await gw.stop()


async def worker_of(redis: aioredis.Redis, user_id: str) -> str:
    """The process id of the worker holding `user_id`'s only socket."""
    members = await redis.zrange(f"{REDIS_PREFIX}city:ws:sockets:{user_id}", 0, -1)
    assert len(members) == 1, members
    return str(members[0]).split("|", 1)[0]


async def on_both_workers(
    stack: AsyncExitStack,
    redis: aioredis.Redis,
    open_one: Callable[[str], AbstractAsyncContextManager[C]],
    prefix: str,
) -> tuple[list[C], dict[str, set[str]]]:
    """Open sockets (one user each) until two workers hold some; clients, users by worker."""
    clients: list[C] = []
    workers: dict[str, set[str]] = {}
    for i in range(MAX_SOCKETS):
        user_id = f"{prefix}{i}"
        clients.append(await stack.enter_async_context(open_one(user_id)))
        workers.setdefault(await worker_of(redis, user_id), set()).add(user_id)
        if len(workers) == 2 and i >= 3:
            return clients, workers
    raise AssertionError(f"{MAX_SOCKETS} sockets all landed on one worker: {workers}")


def worker_pids(parent: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_both_workers_serve_and_a_message_reaches_both_exactly_once(
    two_workers: GatewayProcess, redis_client: aioredis.Redis
) -> None:
    gw = two_workers
    # Two Runtimes, two member leases: one per worker, each keyed by its own id.
    await wait_until(lambda: redis_client.zcard(f"{REDIS_PREFIX}city:ws:procs"))
    assert await redis_client.zcard(f"{REDIS_PREFIX}city:ws:procs") == 2
    async with AsyncExitStack() as stack:
        clients, held = await on_both_workers(
            stack, redis_client, lambda u: client(gw, u), "u_room"
        )
        assert len(held) == 2 and all(held.values())

        async def everyone_has(message_id: str) -> None:
            for c in clients:
                if message_id not in c.messages():
                    await c.until(lambda f: _is_message(f, message_id))

        # REST posts on new connections land on either worker: delivered locally by
        # one, through Redis by the other. Each is awaited everywhere before the next,
        # so the order is checkable.
        expected = []
        for n in range(4):
            r = await gw.http.post(
                f"/city/rooms/{GENERAL}/messages",
                json={"body": f"message {n}"},
                headers=gw.auth("u_poster") | CLOSE,
            )
            assert r.status_code == 201, r.text
            expected.append(r.json()["id"])
            await everyone_has(expected[-1])
        # And over a socket of each worker: both are the origin once.
        by_user = {c.user_id: c for c in clients}
        for users in held.values():
            sender = by_user[sorted(users)[0]]
            await sender.send({"event": "room.message.send", "room_id": GENERAL, "body": "ws"})
            expected.append((await sender.next("room.message"))["message"]["id"])
            await everyone_has(expected[-1])
        for c in clients:
            await c.roundtrip()  # anything duplicated would have arrived by now
            assert c.messages() == expected, c.user_id
        # members_online counts the users of both workers (one Redis hash per room).
        room = (await gw.http.get(f"/city/rooms/{GENERAL}")).json()
        assert room["members_online"] == len(clients)


async def test_a_presence_transition_reaches_sockets_on_both_workers_once(
    two_workers: GatewayProcess, redis_client: aioredis.Redis
) -> None:
    gw = two_workers
    async with AsyncExitStack() as stack:
        watchers: list[PresenceClient]
        watchers, _ = await on_both_workers(
            stack, redis_client, lambda u: presence_client(gw, u), "u_watch"
        )
        r = await gw.http.post(BEAT_URL, json={"user_id": "u_pw"}, headers=SERVICE | CLOSE)
        assert (r.status_code, r.json()["status"]) == (200, "online")
        # Heartbeats that land on either worker (new connections) are not transitions.
        for _ in range(6):
            r = await gw.http.post(BEAT_URL, json={"user_id": "u_pw"}, headers=SERVICE | CLOSE)
            assert r.status_code == 200
        # It stops beating: both workers sweep, one of them announces it offline.
        for w in watchers:
            await w.wait(lambda w=w: len(w.updates("u_pw")) == 2, timeout=1.5 + 5 + 5)
        await barrier(gw, *watchers, marker="u_pw_marker")
        for w in watchers:
            assert w.updates("u_pw") == [("u_pw", "online"), ("u_pw", "offline")]


async def test_sigterm_drains_every_worker(
    two_workers: GatewayProcess, redis_client: aioredis.Redis
) -> None:
    gw = two_workers
    assert gw.proc is not None
    parent = gw.proc.pid
    pids = worker_pids(parent)
    assert len(pids) == 2
    async with AsyncExitStack() as stack:
        clients: list[Client]
        clients, _ = await on_both_workers(stack, redis_client, lambda u: client(gw, u), "u_bye")
        # As `docker stop` / Kubernetes do: SIGTERM to the supervisor only.
        os.kill(parent, signal.SIGTERM)
        codes = await asyncio.gather(*(close_code(c.ws, timeout=15) for c in clients))
        assert set(codes) == {1001}
        assert await asyncio.to_thread(gw.proc.wait, 20) == 0
    assert not [pid for pid in pids if running(pid)]
    # Each worker removed its own member lease on the way out (a drained stop, not a
    # crash that would leave members_online to the lease expiry).
    assert await redis_client.zcard(f"{REDIS_PREFIX}city:ws:procs") == 0
    assert not await redis_client.hlen(f"{REDIS_PREFIX}city:ws:room:{GENERAL}")


async def test_a_worker_that_cannot_start_stops_the_service_with_an_error(
    clean: None,
) -> None:
    """Not a restart loop and not exit 0: the supervisor exits 3 (STARTUP_FAILURE)."""
    gw = GatewayProcess(
        make_settings(),
        # Nothing listens on port 1: each worker's lifespan fails to open its pool.
        extra_env={
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/city",
            "CITY_AUTO_MIGRATE": "false",
        },
        workers=2,
    )
    try:
        with pytest.raises(RuntimeError, match="gateway exited"):
            await gw.start()
        assert gw.proc is not None
        assert await asyncio.to_thread(gw.proc.wait, 30) == 3
    finally:
        await gw.stop()


def test_auto_counts_the_cpus_a_container_may_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` = affinity capped by the cgroup quota (`docker run --cpus 1.5` → 2)."""
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(workers, "_CGROUP_V2_MAX", cpu_max)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))
    cpu_max.write_text("max 100000\n")
    assert workers.resolve_workers("auto") == 8
    cpu_max.write_text("150000 100000\n")
    assert workers.resolve_workers("auto") == 2
    cpu_max.write_text("50000 100000\n")
    assert workers.resolve_workers("auto") == 1
    assert workers.resolve_workers(3) == 3


def test_a_bad_worker_count_is_refused_before_anything_starts() -> None:
    env = {**os.environ, "CITY_JWT_SECRET": "s" * 32, "CITY_ENV": "test"}
    for argv, env_workers in ((["--workers", "0"], None), ([], "many")):
        run_env = {**env, **({"CITY_WORKERS": env_workers} if env_workers else {})}
        done = subprocess.run(
            [sys.executable, "-m", "gateway.app.cli", "serve", *argv],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert "workers" in done.stderr.lower(), done.stderr
