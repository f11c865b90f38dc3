"""Issue 9 item 13 (presence side): presence converges after Redis loses its data.

Before: after Redis restarted empty, users who then stopped heartbeating read
`offline` on `GET /city/presence`, but no `presence.update` and no
`hooks.presence_changed` (what the Matrix bridge listens to) ever said so; and a
transition published while a process was not subscribed never reached its sockets.

Each test runs its own redis-server (the shared one serves other test runs and must
never be restarted). On the old code the waits for the offline update / the missed
update time out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.core.presence.engine import PresenceEngine
from tests.conftest import REDIS_PREFIX, GatewayFactory
from tests.realtime.test_presence_ws import (
    BEAT_URL,
    FAST,
    SERVICE,
    PresenceClient,
    PrivateRedis,
    barrier,
    presence_client,
)
from tests.servers import InProcessGateway, wait_until

Seen = list[tuple[str, str, str]]


@pytest.fixture
async def own_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    yield server
    server.kill()


def record_hooks(*gateways: InProcessGateway) -> Seen:
    """(user, previous, status) handed to hooks.presence_changed by any of them."""
    seen: Seen = []

    async def listener(user_id: str, previous: str, status: str, _ago: int) -> None:
        seen.append((user_id, previous, status))

    for gw in gateways:
        gw.runtime.hooks.presence_changed.append(listener)
    return seen


async def test_users_who_stop_after_a_redis_loss_go_offline_once(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    one = await gateway_factory(redis_url=own_redis.url, **FAST)
    two = await gateway_factory(redis_url=own_redis.url, **FAST)
    hooks = record_hooks(one, two)

    async def beat(gw: InProcessGateway, user_id: str) -> int:
        r = await gw.http.post(BEAT_URL, json={"user_id": user_id}, headers=SERVICE)
        return r.status_code

    async def keep_beating(user_id: str) -> None:
        while True:  # through the outage too (503 then), like an open tab
            with contextlib.suppress(Exception):
                await beat(two, user_id)
            await asyncio.sleep(0.2)

    async with presence_client(one, "u_w1") as w1, presence_client(two, "u_w2") as w2:
        watchers: tuple[PresenceClient, ...] = (w1, w2)
        assert await beat(one, "u_gone") == 200
        stay = asyncio.create_task(keep_beating("u_stay"))
        try:
            for w in watchers:
                await w.wait(
                    lambda w=w: {("u_gone", "online"), ("u_stay", "online")} <= set(w.updates())
                )

            # Redis restarts empty; u_gone's tab is gone by then, u_stay's keeps beating.
            own_redis.kill()
            await own_redis.start()

            # u_gone: offline on every socket and to the hooks, exactly once.
            for w in watchers:
                await w.wait(lambda w=w: ("u_gone", "offline") in w.updates(), timeout=15)
            await wait_until(lambda: ("u_gone", "online", "offline") in hooks, timeout=5)
            await barrier(one, *watchers, marker="u_marker")
            for w in watchers:
                assert w.updates("u_gone") == [("u_gone", "online"), ("u_gone", "offline")]
                # u_stay never went offline (its heartbeats kept it through the window).
                assert ("u_stay", "offline") not in w.updates()
            assert [h for h in hooks if h[0] == "u_gone"] == [
                ("u_gone", "offline", "online"),
                ("u_gone", "online", "offline"),
            ]
            assert not [h for h in hooks if h[0] == "u_stay" and h[2] == "offline"]
            r = await one.http.get("/city/presence", params={"user_id": ["u_gone", "u_stay"]})
            assert [u["status"] for u in r.json()["users"]] == ["offline", "online"]
        finally:
            stay.cancel()
    assert one.runtime.presence.recovery.losses_seen == 1


async def test_a_missed_update_reaches_sockets_after_resubscribing(
    gateway_factory: GatewayFactory, own_redis: PrivateRedis
) -> None:
    gw = await gateway_factory(redis_url=own_redis.url, **FAST)
    client = aioredis.from_url(own_redis.url, decode_responses=True)
    # A transition nobody announces: what a process misses while not subscribed.
    engine = PresenceEngine(
        client,
        prefix=REDIS_PREFIX,
        ttl_seconds=30,
        away_after_seconds=300,
        offline_grace_seconds=0,
    )
    try:
        async with presence_client(gw, "u_watch") as watcher:
            _, transition = await engine.heartbeat("u_silent", "tab")
            assert transition is not None
            await barrier(gw, watcher, marker="u_m1")
            assert watcher.updates("u_silent") == []

            # The process's subscription drops and comes back.
            await client.client_kill_filter(_type="pubsub")
            await watcher.wait(lambda: watcher.updates("u_silent") == [("u_silent", "online")])
            await barrier(gw, watcher, marker="u_m2")
            assert watcher.updates("u_silent") == [("u_silent", "online")]
    finally:
        await client.aclose()


async def test_seed_declares_once_and_a_heartbeat_in_the_window_cancels_the_offline(
    own_redis: PrivateRedis,
) -> None:
    clients = [aioredis.from_url(own_redis.url, decode_responses=True) for _ in range(2)]
    engines = [
        PresenceEngine(
            c, prefix="s:", ttl_seconds=30, away_after_seconds=300, offline_grace_seconds=0
        )
        for c in clients
    ]
    try:
        a, b = engines
        # Both processes remember both users; Redis knows nothing of them.
        for engine in engines:
            assert (await engine.seed("u_back", "online", 1_000, 500)).status == "online"
            assert (await engine.seed("u_left", "away", 1_000, 500)).status == "away"
        assert await a.count_online() == 2
        # u_back's tab beats inside the window: no transition at all.
        assert (await a.heartbeat("u_back", "tab"))[1] is None
        seen = []

        async def u_left_offline() -> bool:
            for batch in await asyncio.gather(a.sweep(), b.sweep()):
                seen.extend(batch)
            return bool(seen)

        await wait_until(u_left_offline, timeout=5)
        await asyncio.sleep(0)  # one more round of both sweepers finds nothing
        assert await a.sweep() == [] and await b.sweep() == []
        assert [(t.user_id, t.previous, t.status) for t in seen] == [("u_left", "away", "offline")]
        assert [s.status for s in await b.get_statuses(["u_back", "u_left"])] == [
            "online",
            "offline",
        ]
        # Known state wins: seeding a user Redis knows about changes nothing.
        assert (await b.seed("u_left", "online", 0)).status == "offline"
        assert (await b.seed("u_back", "away", 0)).status == "online"
    finally:
        for c in clients:
            await c.aclose()
