"""Presence with two gateway OS processes on two ports sharing PostgreSQL and Redis.

Each transition must reach the presence sockets of both processes exactly once, and
be handed to `hooks.presence_changed` by exactly one process: the
`city_presence_transitions_total` counter (fed by that hook) summed over both
processes counts it once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from tests.conftest import delete_prefixed, make_settings
from tests.realtime.test_presence_ws import (
    BEAT_URL,
    FAST,
    SERVICE,
    PresenceClient,
    barrier,
    presence_client,
)
from tests.servers import GatewayProcess, wait_until

_TRANSITION_RE = re.compile(
    r'^city_presence_transitions_total\{from_status="(\w+)",to_status="(\w+)"\} ([\d.]+)$', re.M
)


@pytest.fixture(scope="module")
async def pair(
    database: str, redis_client: aioredis.Redis
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    """Two processes for the whole module; the tests use distinct users."""
    # Users left online by earlier tests of this run would expire inside the pair and
    # unbalance its came/went counts: start from an empty presence namespace.
    await delete_prefixed(redis_client)
    settings = make_settings(**FAST)
    a, b = GatewayProcess(settings), GatewayProcess(settings)
    try:
        await asyncio.gather(a.start(), b.start())

        async def ready(gw: GatewayProcess) -> bool:
            return (await gw.http.get("/readyz")).status_code == 200

        await wait_until(lambda: ready(a), timeout=15)
        await wait_until(lambda: ready(b), timeout=15)
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop(), return_exceptions=True)


Counts = dict[tuple[str, str], float]


async def transitions(*gateways: GatewayProcess) -> Counts:
    """Transitions handed to the hooks, summed over the processes."""
    total: Counts = {}
    for gw in gateways:
        text = (await gw.http.get("/metrics")).text
        for previous, status, value in _TRANSITION_RE.findall(text):
            total[(previous, status)] = total.get((previous, status), 0) + float(value)
    return total


async def settled(a: GatewayProcess, b: GatewayProcess) -> Counts:
    """Wait until nobody is online and every user who came went (as many times).

    A transition announced twice (or lost) breaks the balance for good, so this also
    fails when exactly-once does not hold.
    """
    result: Counts = {}

    async def quiet() -> bool:
        nonlocal result
        if (await a.http.get("/city/stats")).json()["users_online"] != 0:
            return False
        result = await transitions(a, b)
        came = sum(v for (previous, _), v in result.items() if previous == "offline")
        went = sum(v for (_, status), v in result.items() if status == "offline")
        return came == went

    await wait_until(quiet, timeout=1.5 + 5 + 5, interval=0.1)
    return result


def delta(after: Counts, before: Counts) -> Counts:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# Two users came and went: two transitions each way.
TWO_CAME_AND_WENT: Counts = {("offline", "online"): 2, ("online", "offline"): 2}


@asynccontextmanager
async def counted(a: GatewayProcess, b: GatewayProcess) -> AsyncIterator[Counts]:
    """The transitions handed to the hooks during the block, once both processes settled."""
    before = await settled(a, b)
    during: Counts = {}
    yield during
    during.update(delta(await settled(a, b), before))


@asynccontextmanager
async def watching(
    a: GatewayProcess, b: GatewayProcess, tag: str = ""
) -> AsyncIterator[tuple[PresenceClient, PresenceClient]]:
    """A presence socket on each process (users `u_wa{tag}` and `u_wb{tag}`)."""
    async with presence_client(a, f"u_wa{tag}") as on_a, presence_client(b, f"u_wb{tag}") as on_b:
        yield on_a, on_b


async def test_a_heartbeat_on_one_process_reaches_both_once(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = pair
    async with counted(a, b) as handed_over, watching(a, b) as (on_a, on_b):
        r = await a.http.post(BEAT_URL, json={"user_id": "u_mp1"}, headers=SERVICE)
        assert (r.status_code, r.json()["status"]) == (200, "online")
        for c in (on_a, on_b):
            await c.wait(lambda c=c: c.updates("u_mp1") == [("u_mp1", "online")])
        # Heartbeats on both processes are not transitions.
        for gw in (a, b, a, b):
            r = await gw.http.post(BEAT_URL, json={"user_id": "u_mp1"}, headers=SERVICE)
            assert r.status_code == 200
        await barrier(b, on_a, on_b, marker="u_mp1_marker")
        assert on_a.updates("u_mp1") == on_b.updates("u_mp1") == [("u_mp1", "online")]
        # Both stop beating: each is announced offline once, to both processes' sockets.
        for c in (on_a, on_b):
            await c.wait(lambda c=c: len(c.updates()) == 4, timeout=1.5 + 5)
        for c in (on_a, on_b):
            assert sorted(c.updates()) == [
                ("u_mp1", "offline"),
                ("u_mp1", "online"),
                ("u_mp1_marker", "offline"),
                ("u_mp1_marker", "online"),
            ]
    # Two users came and went: each transition handed over once in all.
    assert handed_over == TWO_CAME_AND_WENT


async def test_a_user_who_stops_heartbeating_is_announced_offline_once(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = pair
    async with counted(a, b) as handed_over, watching(a, b, "2") as (on_a, on_b):
        r = await b.http.post(
            BEAT_URL, json={"user_id": "u_mp2", "device_id": "tab"}, headers=SERVICE
        )
        assert r.status_code == 200
        for c in (on_a, on_b):
            # Online, then (both processes sweeping) offline within TTL + 5 s.
            await c.wait(lambda c=c: len(c.updates("u_mp2")) == 2, timeout=1.5 + 5 + 1)
        await barrier(a, on_a, on_b, marker="u_mp2_marker")
        for c in (on_a, on_b):
            assert c.updates("u_mp2") == [("u_mp2", "online"), ("u_mp2", "offline")]
    assert handed_over == TWO_CAME_AND_WENT


async def test_tabs_on_two_processes_make_one_user(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    a, b = pair
    async with counted(a, b) as handed_over, presence_client(a, "u_wa3") as watcher:
        async with presence_client(b, "u_mp3") as tab_b:
            async with presence_client(a, "u_mp3") as tab_a:
                await tab_a.beat()
                await watcher.wait(lambda: watcher.updates("u_mp3") == [("u_mp3", "online")])
                await tab_b.beat(status="away")
                await tab_b.roundtrip()  # handled: B's device is recorded
            # The tab on A closed; the one on B is away: the user is away now.
            await watcher.wait(lambda: watcher.updates("u_mp3")[-1:] == [("u_mp3", "away")])
            await tab_b.beat()
            await watcher.wait(lambda: watcher.updates("u_mp3")[-1:] == [("u_mp3", "online")])
        await watcher.wait(lambda: watcher.updates("u_mp3")[-1:] == [("u_mp3", "offline")], 5)
        await barrier(b, watcher, marker="u_mp3_marker")
        assert [s for _, s in watcher.updates("u_mp3")] == ["online", "away", "online", "offline"]
    assert handed_over == {
        ("offline", "online"): 2,
        ("online", "away"): 1,
        ("away", "online"): 1,
        ("online", "offline"): 2,
    }
