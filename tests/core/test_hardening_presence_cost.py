"""Issue 9 item 1: a heartbeat's cost does not grow with the user's devices (SPEC §12).

Before: the script walked every live device on every call (`ZRANGE 0 -1` and one
`HGET` each), so ~7,200 devices made one heartbeat cost 5 ms of Redis. Now the state
comes from counts. Proof without timing: Redis's per-command counters
(`INFO commandstats`, which include the commands a script runs) show the same
commands, the same number of times, for a heartbeat of a user with 10 devices and
of one with 3,000. On the old code the second one ran ~3,000 more HGETs.

A private redis-server, so nobody else's commands are counted (and the counters may
be reset).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.core.presence.engine import PresenceEngine, PresenceTransition
from tests.realtime.test_presence_ws import PrivateRedis

MANY = 3_000


def edge(t: PresenceTransition | None) -> tuple[str, str] | None:
    return None if t is None else (t.previous, t.status)


@pytest.fixture
async def own_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    yield server
    server.kill()


async def commands_run(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last reset (the test's own INFO/CONFIG left out)."""
    stats = await client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


async def add_devices(engine: PresenceEngine, user_id: str, count: int, status: str) -> None:
    client: aioredis.Redis = engine._redis
    await engine.heartbeat(user_id, "tab-0", status)  # loads the script
    async with client.pipeline(transaction=False) as pipe:
        for i in range(1, count):
            keys, args = engine.heartbeat_call(user_id, f"tab-{i}", status)
            pipe.evalsha(engine.script_sha, len(keys), *keys, *args)
        await pipe.execute()


async def test_heartbeat_work_is_independent_of_the_device_count(
    own_redis: PrivateRedis,
) -> None:
    client = aioredis.from_url(own_redis.url, decode_responses=True)
    # No cap (None), as if LIMIT_PRESENCE_DEVICES were raised far beyond its default.
    engine = PresenceEngine(
        client, prefix="c:", ttl_seconds=60, away_after_seconds=300, offline_grace_seconds=0
    )
    try:
        await add_devices(engine, "u_few", 10, "away")
        await add_devices(engine, "u_many", MANY, "away")

        # Correct with many devices: away while all are away, online with one online.
        assert [s.status for s in await engine.get_statuses(["u_many"])] == ["away"]
        _, t = await engine.heartbeat("u_many", "tab-1500", "online")
        assert edge(t) == ("away", "online")
        _, t = await engine.heartbeat("u_many", "tab-1500", "away")
        assert edge(t) == ("online", "away")
        _, t = await engine.heartbeat("u_many", "new-tab")  # a new, online device
        assert edge(t) == ("away", "online")
        _, t = await engine.device_offline("u_many", "tab-7")  # an away one leaving
        assert t is None
        _, t = await engine.device_offline("u_many", "new-tab")  # the online one
        assert edge(t) == ("online", "away")

        # The same heartbeat (a renewal of an away device) for each user.
        per_user = {}
        for user_id in ("u_few", "u_many"):
            await client.config_resetstat()
            await engine.heartbeat(user_id, "tab-3", "away")
            per_user[user_id] = await commands_run(client)
        assert per_user["u_many"] == per_user["u_few"]
        assert sum(per_user["u_many"].values()) < 40, per_user["u_many"]
    finally:
        await client.aclose()
