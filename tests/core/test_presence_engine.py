"""Presence engine against a real, shared Redis (or the local cluster: tests/conftest.py).

Every test works under its own random key prefix and deletes only its own keys, since
other test runs use the same Redis at the same time. Time-based behaviour uses short
TTLs and waits on conditions (with a deadline), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.core.presence.engine import PresenceEngine, PresenceState, PresenceTransition
from gateway.infra.redis_clients import redis_client as build_redis_client
from tests.conftest import REDIS_CLUSTER, REDIS_URL


def new_client() -> aioredis.Redis:
    return build_redis_client(REDIS_URL, cluster=REDIS_CLUSTER)


_REPO_ROOT = str(Path(__file__).resolve().parents[2])

MakeEngine = Callable[..., PresenceEngine]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"t{uuid.uuid4().hex}:"
    yield value
    client = new_client()
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}*", count=1000)]
        for key in keys:  # one by one: on a cluster they live in many slots
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = new_client()
    yield client
    await client.aclose()


@pytest.fixture
async def make_engine(prefix: str) -> AsyncIterator[MakeEngine]:
    """Engines with their own Redis client each, like separate gateway processes."""
    clients: list[aioredis.Redis] = []

    def make(**overrides: Any) -> PresenceEngine:
        client = new_client()
        clients.append(client)
        options: dict[str, Any] = {
            "prefix": prefix,
            "ttl_seconds": 30,
            "away_after_seconds": 300,
            "offline_grace_seconds": 0,
        }
        options.update(overrides)
        return PresenceEngine(client, **options)

    yield make
    for client in clients:
        await client.aclose()


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_for(condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def sweep_until(
    engines: Iterable[PresenceEngine],
    done: Callable[[list[PresenceTransition]], bool],
    *,
    timeout: float,
    limit: int = 500,
) -> list[PresenceTransition]:
    """Sweep with all engines concurrently, collecting transitions until `done`."""
    engines = list(engines)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[PresenceTransition] = []
    while True:
        for batch in await asyncio.gather(*(e.sweep(limit) for e in engines)):
            seen.extend(batch)
        if done(seen):
            return seen
        assert loop.time() < deadline, f"timed out; transitions so far: {seen}"
        await asyncio.sleep(0.02)


def offline_count(n: int) -> Callable[[list[PresenceTransition]], bool]:
    return lambda seen: sum(t.status == "offline" for t in seen) >= n


def edge(t: PresenceTransition | None) -> tuple[str, str] | None:
    return None if t is None else (t.previous, t.status)


# --- single user, single process -------------------------------------------------------


async def test_single_device_online_away_online(
    make_engine: MakeEngine, redis_client: aioredis.Redis
) -> None:
    engine = make_engine(ttl_seconds=30, away_after_seconds=300)
    key = engine.spec_key("alice")

    state, transition = await engine.heartbeat("alice", "tab1")
    assert state.status == "online"
    assert edge(transition) == ("offline", "online")
    assert await redis_client.get(key) == "online"
    assert 28_000 < await redis_client.pttl(key) <= 30_000

    assert (await engine.heartbeat("alice", "tab1"))[1] is None

    # Idle for longer than away_after: away, without the client saying so.
    state, transition = await engine.heartbeat("alice", "tab1", last_active_ago=300_000)
    assert state.status == "away"
    assert edge(transition) == ("online", "away")
    assert await redis_client.get(key) == "away"

    _, transition = await engine.heartbeat("alice", "tab1", status="online", last_active_ago=0)
    assert edge(transition) == ("away", "online")
    _, transition = await engine.heartbeat("alice", "tab1", status="away")
    assert edge(transition) == ("online", "away")
    _, transition = await engine.heartbeat("alice", "tab1", status="unavailable")
    assert transition is None  # Matrix's word for away: same state
    _, transition = await engine.heartbeat("alice", "tab1", status="online")
    assert edge(transition) == ("away", "online")
    assert await redis_client.get(key) == "online"
    assert 28_000 < await redis_client.pttl(key) <= 30_000


async def test_last_active_ago_is_relative_to_server_time(make_engine: MakeEngine) -> None:
    engine = make_engine()
    state, _ = await engine.heartbeat("bob", None, last_active_ago=5_000)
    assert 5_000 <= state.last_active_ago < 6_000
    [status] = await engine.get_statuses(["bob"])
    assert status.status == "online"
    assert 5_000 <= status.last_active_ago < 6_000
    # A newer activity from any device wins; an older report does not move it back.
    state, _ = await engine.heartbeat("bob", "phone", last_active_ago=0)
    assert state.last_active_ago < 1_000
    state, _ = await engine.heartbeat("bob", None, last_active_ago=60_000)
    assert state.last_active_ago < 1_000


async def test_multi_tab(make_engine: MakeEngine, redis_client: aioredis.Redis) -> None:
    engine = make_engine(offline_grace_seconds=0)
    key = engine.spec_key("carol")
    assert edge((await engine.heartbeat("carol", "a"))[1]) == ("offline", "online")
    assert (await engine.heartbeat("carol", "b"))[1] is None

    # One tab closing leaves the user online.
    state, transition = await engine.device_offline("carol", "a")
    assert (state.status, transition) == ("online", None)
    assert await engine.count_online() == 1

    # The remaining tab alone decides: away if it is away ...
    assert edge((await engine.heartbeat("carol", "b", "away"))[1]) == ("online", "away")
    # ... online as soon as any tab is online.
    assert edge((await engine.heartbeat("carol", "a"))[1]) == ("away", "online")
    assert edge((await engine.device_offline("carol", "a"))[1]) == ("online", "away")
    assert await redis_client.get(key) == "away"

    state, transition = await engine.device_offline("carol", "b")
    assert state.status == "offline"
    assert edge(transition) == ("away", "offline")
    assert await redis_client.exists(key) == 0
    assert await engine.count_online() == 0
    assert [s.status for s in await engine.get_statuses(["carol"])] == ["offline"]


async def test_partial_expiry_re_derives_user_state(make_engine: MakeEngine) -> None:
    engine = make_engine(ttl_seconds=1)
    await engine.heartbeat("dave", "desk")  # online, then stops
    seen: list[PresenceTransition] = []

    async def away_after_desk_expires() -> bool:
        _, t = await engine.heartbeat("dave", "phone", "away")  # keeps beating, away
        seen.extend([t] if t else [])
        seen.extend(await engine.sweep())
        return any(t.status == "away" for t in seen)

    await wait_for(away_after_desk_expires, timeout=6, what="desk tab to expire")
    assert [edge(t) for t in seen] == [("online", "away")]


# --- offline: grace and expiry ---------------------------------------------------------


async def test_explicit_offline_waits_for_grace(
    make_engine: MakeEngine, redis_client: aioredis.Redis
) -> None:
    engine = make_engine(offline_grace_seconds=1)
    await engine.heartbeat("erin", "tab")
    started = await server_ms(redis_client)
    state, transition = await engine.device_offline("erin", "tab")
    assert (state.status, transition) == ("online", None)
    # Still visibly online during the grace, but no longer than the grace.
    assert await redis_client.get(engine.spec_key("erin")) == "online"
    assert 0 < await redis_client.pttl(engine.spec_key("erin")) <= 1_000

    seen = await sweep_until([engine], offline_count(1), timeout=6)
    assert await server_ms(redis_client) - started >= 1_000
    assert [edge(t) for t in seen] == [("online", "offline")]
    assert await engine.sweep() == []
    assert await redis_client.exists(engine.spec_key("erin")) == 0
    assert await engine.count_online() == 0


@pytest.mark.parametrize("device", ["tab", "other-tab"])
async def test_reconnect_inside_grace_publishes_nothing(
    make_engine: MakeEngine, redis_client: aioredis.Redis, device: str
) -> None:
    engine = make_engine(offline_grace_seconds=1)
    await engine.heartbeat("frank", "tab")
    started = await server_ms(redis_client)
    assert (await engine.device_offline("frank", "tab"))[1] is None
    state, transition = await engine.heartbeat("frank", device)
    assert (state.status, transition) == ("online", None)

    async def grace_over() -> bool:
        return await server_ms(redis_client) > started + 1_200

    await wait_for(grace_over, timeout=5, what="grace to end")
    assert await engine.sweep() == []
    assert [s.status for s in await engine.get_statuses(["frank"])] == ["online"]
    assert await redis_client.get(engine.spec_key("frank")) == "online"
    assert await redis_client.pttl(engine.spec_key("frank")) > 20_000


async def test_zero_grace_goes_offline_at_once(make_engine: MakeEngine) -> None:
    engine = make_engine(offline_grace_seconds=0)
    await engine.heartbeat("gina", None)
    state, transition = await engine.device_offline("gina", "default")  # None = "default"
    assert state.status == "offline"
    assert edge(transition) == ("online", "offline")
    assert (await engine.device_offline("gina", None))[1] is None


async def test_heartbeats_stopping_expire_once(
    make_engine: MakeEngine, redis_client: aioredis.Redis
) -> None:
    engine = make_engine(ttl_seconds=1, offline_grace_seconds=5)
    # Read the clock before the heartbeat: the TTL runs from the heartbeat's own time.
    started = await server_ms(redis_client)
    await engine.heartbeat("hank", "tab", last_active_ago=0)
    seen = await sweep_until([engine], offline_count(1), timeout=1 + 5)
    assert await server_ms(redis_client) - started >= 1_000
    assert [edge(t) for t in seen] == [("online", "offline")]
    assert seen[0].last_active_ago >= 1_000
    assert await engine.sweep() == []
    assert await redis_client.exists(engine.spec_key("hank")) == 0
    # Offline users keep their last activity for a while.
    [state] = await engine.get_statuses(["hank"])
    assert state.status == "offline"
    assert state.last_active_ago >= 1_000


async def test_run_sweeper_hands_over_transitions(make_engine: MakeEngine) -> None:
    engine = make_engine(ttl_seconds=1)
    received: list[PresenceTransition] = []
    got_one = asyncio.Event()

    async def sink(transitions: list[PresenceTransition]) -> None:
        received.extend(transitions)
        got_one.set()

    await engine.heartbeat("ivy", "tab")
    task = asyncio.create_task(engine.run_sweeper(sink, interval_seconds=0.05))
    try:
        await asyncio.wait_for(got_one.wait(), timeout=6)
    finally:
        task.cancel()
    assert [edge(t) for t in received] == [("online", "offline")]


# --- several processes -----------------------------------------------------------------


async def test_concurrent_heartbeats_transition_once(make_engine: MakeEngine) -> None:
    engines = [make_engine(), make_engine()]
    beats = [engines[i % 2].heartbeat("jack", f"tab{i % 7}") for i in range(100)]
    results = await asyncio.gather(*beats)
    assert [edge(t) for _, t in results if t] == [("offline", "online")]

    offs = [engines[i % 2].device_offline("jack", f"tab{i % 7}") for i in range(28)]
    results = await asyncio.gather(*offs)
    assert [edge(t) for _, t in results if t] == [("online", "offline")]
    assert await engines[0].count_online() == 0


async def test_concurrent_sweepers_emit_each_expiry_once(
    make_engine: MakeEngine, redis_client: aioredis.Redis, prefix: str
) -> None:
    engines = [make_engine(ttl_seconds=1, offline_grace_seconds=1) for _ in range(3)]
    expiring = [f"exp:{i}" for i in range(60)]
    leaving = [f"left:{i}" for i in range(20)]
    await asyncio.gather(*(engines[0].heartbeat(u, "tab") for u in expiring + leaving))
    await asyncio.gather(*(engines[1].device_offline(u, "tab") for u in leaving))
    assert await engines[0].count_online() == 80

    # Small batches so the sweepers interleave many times.
    seen = await sweep_until(engines, offline_count(80), timeout=10, limit=7)
    per_user = Counter(t.user_id for t in seen)
    assert per_user == Counter({u: 1 for u in expiring + leaving})
    assert all(edge(t) == ("online", "offline") for t in seen)
    assert await engines[2].count_online() == 0
    for deadlines in engines[2].keys.deadlines():
        assert await redis_client.zcard(deadlines) == 0


async def test_random_concurrent_traffic_keeps_transitions_balanced(
    make_engine: MakeEngine,
) -> None:
    """Many processes, random operations: each user's transitions form one valid chain.

    Starting and ending offline, a chain enters each state as often as it leaves it; a
    duplicated or lost transition breaks that balance.
    """
    rng = random.Random(7)
    engines = [make_engine(ttl_seconds=1, offline_grace_seconds=0.1) for _ in range(3)]
    users = [f"u{i}" for i in range(8)]
    seen: list[PresenceTransition] = []

    async def worker(engine: PresenceEngine, ops: int) -> None:
        for _ in range(ops):
            user, device = rng.choice(users), rng.choice(["a", "b"])
            roll = rng.random()
            if roll < 0.45:
                _, t = await engine.heartbeat(user, device, rng.choice([None, "away"]))
            elif roll < 0.8:
                _, t = await engine.device_offline(user, device)
            else:
                seen.extend(await engine.sweep(limit=3))
                t = None
            if t:
                seen.append(t)
            if rng.random() < 0.1:
                await asyncio.sleep(0.1)  # let some devices and graces run out

    await asyncio.gather(*(worker(engines[i % 3], 150) for i in range(9)))

    async def all_offline() -> bool:
        seen.extend(await engines[0].sweep())
        states = await engines[1].get_statuses(users)
        return all(s.status == "offline" for s in states)

    await wait_for(all_offline, timeout=10, what="everyone to go offline")
    assert await engines[2].count_online() == 0
    for user in users:
        flow: Counter[str] = Counter()
        for t in seen:
            if t.user_id == user:
                flow[t.previous] -= 1
                flow[t.status] += 1
        assert all(v == 0 for v in flow.values()), (user, [t for t in seen if t.user_id == user])


_CHILD_SWEEPER = """
import asyncio, json, sys
from gateway.core.presence.engine import PresenceEngine
from gateway.infra.redis_clients import redis_client

async def main(url, prefix, cluster):
    client = redis_client(url, cluster=cluster == "1")
    engine = PresenceEngine(client, prefix=prefix, ttl_seconds=1, away_after_seconds=300,
                            offline_grace_seconds=0)
    print("ready", flush=True)

    async def pending():
        return sum([await client.zcard(key) for key in engine.keys.deadlines()])

    while await pending():
        for t in await engine.sweep(limit=5):
            print(json.dumps([t.user_id, t.previous, t.status]), flush=True)
        await asyncio.sleep(0.01)
    await client.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_os_processes_sweep_each_expiry_once(
    make_engine: MakeEngine, prefix: str
) -> None:
    engine = make_engine(ttl_seconds=3)
    users = [f"p:{i}" for i in range(40)]
    await asyncio.gather(*(engine.heartbeat(u, "tab") for u in users))
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD_SWEEPER,
            REDIS_URL,
            prefix,
            "1" if REDIS_CLUSTER else "0",
            stdout=asyncio.subprocess.PIPE,
            cwd=_REPO_ROOT,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(child.communicate() for child in children)), timeout=30
    )
    assert [child.returncode for child in children] == [0, 0]
    lines = [out.decode().splitlines() for out, _ in outputs]
    assert all(child_lines[:1] == ["ready"] for child_lines in lines)
    seen = [json.loads(line) for child_lines in lines for line in child_lines[1:]]
    assert Counter(user for user, _, _ in seen) == Counter({u: 1 for u in users})
    assert all((prev, status) == ("online", "offline") for _, prev, status in seen)


# --- reads, counting, odd ids ----------------------------------------------------------


async def test_count_online_counts_online_and_away(make_engine: MakeEngine) -> None:
    engine = make_engine(offline_grace_seconds=0)
    assert await engine.count_online() == 0
    for user in ("k1", "k2", "k3"):
        await engine.heartbeat(user, "tab")
    for user in ("k4", "k5"):
        await engine.heartbeat(user, "tab", "away")
    await engine.heartbeat("k3", "phone")  # a second device is not a second user
    assert await engine.count_online() == 5
    await engine.device_offline("k4", "tab")
    assert await engine.count_online() == 4


async def test_get_statuses(make_engine: MakeEngine) -> None:
    engine = make_engine()
    assert await engine.get_statuses([]) == []
    await engine.heartbeat("on", "tab")
    await engine.heartbeat("idle", "tab", "away", last_active_ago=400_000)
    states = await engine.get_statuses(["nobody", "idle", "on", "nobody"])
    assert [s.user_id for s in states] == ["nobody", "idle", "on", "nobody"]
    assert [s.status for s in states] == ["offline", "away", "online", "offline"]
    assert states[0] == PresenceState("nobody", "offline", 0)
    assert states[1].last_active_ago >= 400_000


async def test_odd_ids_stay_under_prefix(
    make_engine: MakeEngine, redis_client: aioredis.Redis, prefix: str
) -> None:
    engine = make_engine(offline_grace_seconds=0)
    users = ["a:b", "{tag}", "ünï🙂", "presence:user:x", " ", "*?[x]", "d:state", ""]
    devices = ["{x}", "d:", "state", "🙂:tab"]
    for user in users:
        for device in devices:
            await engine.heartbeat(user, device)
    states = await engine.get_statuses(users)
    assert [s.status for s in states] == ["online"] * len(users)
    assert await engine.count_online() == len(users)
    for user in users:
        assert await redis_client.get(engine.spec_key(user)) == "online"
        # The SPEC's key; on a cluster with the user's bucket tag before the id.
        tag = f"{{b{engine.keys.bucket(user)}}}:" if REDIS_CLUSTER else ""
        assert engine.spec_key(user) == f"{prefix}presence:{tag}user:{user}"
    keys = [k async for k in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
    # devices, state, spec per user; deadlines and online per bucket in use
    buckets = {engine.keys.bucket(user) for user in users}
    assert len(keys) == 3 * len(users) + 2 * len(buckets)

    for user in users:
        for i, device in enumerate(devices):
            _, transition = await engine.device_offline(user, device)
            last = i == len(devices) - 1
            assert edge(transition) == (("online", "offline") if last else None)
    assert await engine.count_online() == 0


async def test_unknown_user_offline_leaves_no_keys(
    make_engine: MakeEngine, redis_client: aioredis.Redis, prefix: str
) -> None:
    engine = make_engine(offline_grace_seconds=2)
    state, transition = await engine.device_offline("ghost", "tab")
    assert (state, transition) == (PresenceState("ghost", "offline", 0), None)
    assert [k async for k in redis_client.scan_iter(match=f"{prefix}*")] == []


async def test_heartbeat_rejects_offline_status(make_engine: MakeEngine) -> None:
    engine = make_engine()
    with pytest.raises(ValueError, match="online or away"):
        await engine.heartbeat("liz", "tab", "offline")
