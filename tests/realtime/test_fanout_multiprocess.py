"""Two `city-gateway serve` processes sharing PostgreSQL and Redis (SPEC §1, §7)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.conftest import make_settings
from tests.realtime.test_ws_rooms import (
    GENERAL,
    Client,
    _is_message,
    client,
    close_code,
    online,
    post_rest,
)
from tests.servers import GatewayProcess, wait_until


@pytest.fixture
async def pair(clean: None) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    # A short lease so that a killed process's members vanish quickly.
    settings = make_settings(ws_member_lease_seconds=1.5)
    one, two = GatewayProcess(settings), GatewayProcess(settings)
    try:
        await one.start()
        await two.start()
        yield one, two
    finally:
        for gw in (one, two):
            if gw.proc is not None:
                await gw.stop()


async def _everyone_has(clients: list[Client], message_id: str) -> None:
    for c in clients:
        if message_id not in c.messages():
            await c.until(lambda f: _is_message(f, message_id))


async def test_messages_cross_processes_exactly_once(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    one, two = pair
    async with AsyncExitStack() as stack:
        ann = await stack.enter_async_context(client(one, "u_ann"))
        bob = await stack.enter_async_context(client(two, "u_bob"))
        cid = await stack.enter_async_context(client(two, "u_cid"))
        everyone = [ann, bob, cid]
        await ann.until(lambda f: f.get("user_id") == "u_cid")  # joins cross too
        await bob.until(lambda f: f.get("user_id") == "u_cid")

        expected = []
        # WebSocket on process one, REST on two, WebSocket on two, REST on one.
        await ann.send({"event": "room.message.send", "room_id": GENERAL, "body": "1 ws one"})
        first = (await ann.next("room.message"))["message"]["id"]
        expected.append(first)
        await _everyone_has(everyone, first)
        expected.append(await post_rest(two, "u_dan", "2 rest two"))
        await _everyone_has(everyone, expected[-1])
        await cid.send({"event": "room.message.send", "room_id": GENERAL, "body": "3 ws two"})
        expected.append((await cid.next("room.message"))["message"]["id"])
        await _everyone_has(everyone, expected[-1])
        expected.append(await post_rest(one, "u_dan", "4 rest one"))
        await _everyone_has(everyone, expected[-1])
        # Markers through both processes: anything duplicated would have arrived by now.
        for gw in (one, two, one):
            expected.append(await post_rest(gw, "u_dan", "marker"))
            await _everyone_has(everyone, expected[-1])
        for c in everyone:
            await c.roundtrip()
            assert c.messages() == expected, c.user_id


async def test_members_online_across_processes_and_a_killed_process(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    one, two = pair
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(client(two, "u_watch"))
        for gw, user in ((one, "u_ann"), (one, "u_bob"), (one, "u_bob"), (two, "u_bob")):
            await stack.enter_async_context(client(gw, user))
        # u_watch, u_ann, u_bob (three sockets on two processes): three distinct users.
        for gw in (one, two):
            assert await online(gw) == (3, 3)

        one.kill()  # no clean-up at all
        # Within the lease (+ one renewal period) process two reaps one's members and
        # tells the room that u_ann left; u_bob is still there through process two.
        leave = await watcher.until(lambda f: f["event"] == "room.leave", timeout=15)
        assert leave == {"event": "room.leave", "room_id": GENERAL, "user_id": "u_ann"}
        await wait_until(lambda: _online_is(two, 2), timeout=15)
        await watcher.roundtrip()
        assert [f for f in watcher.frames if f["event"] == "room.leave"] == [leave]

        # Graceful shutdown of the survivor: its sockets are closed with 1001.
        await two.stop(signal.SIGTERM)
        assert await close_code(watcher.ws) == 1001


async def _online_is(gw: GatewayProcess, expected: int) -> bool:
    return await online(gw) == (expected, expected)
