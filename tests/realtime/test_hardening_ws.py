"""WebSocket hardening (SPEC §12, issue 9 items 5, 9, 10 and 13).

Sockets per user across processes (close 4429, no leak when a process dies), close
4401 at token expiry, values PostgreSQL cannot store answered as `invalid_input`,
and a dead process's members gone within WS_MEMBER_LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gateway.core.auth import mint_token
from tests.conftest import SECURITY_DEFAULTS, GatewayFactory, make_settings
from tests.realtime.test_ws_rooms import GENERAL, client, close_code, online, room_url
from tests.servers import Gateway, GatewayProcess, InProcessGateway, wait_until

TOO_MANY = 4429
EXPIRED = 4401


def presence_url(gw: Gateway, user_id: str, token: str | None = None) -> str:
    return f"{gw.ws_url}/ws/city/presence?token={token or gw.token(user_id)}"


async def _open_presence(stack: AsyncExitStack, gw: Gateway, user_id: str) -> ClientConnection:
    """A presence socket that the server has admitted (it answered a ping)."""
    ws = await stack.enter_async_context(connect(presence_url(gw, user_id), compression=None))
    await ws.send('{"event":"ping"}')
    assert '"pong"' in await asyncio.wait_for(ws.recv(), 10)
    return ws


async def _admitted(gw: Gateway, user_id: str) -> bool:
    """Whether a new room socket of the user is let in (then closed again)."""
    async with connect(room_url(gw, GENERAL, user_id), compression=None) as ws:
        # Other users' join/leave frames may come first; the answer is our own join
        # (admitted) or the close (refused).
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), 10)
            except Exception:
                assert ws.close_code == TOO_MANY, ws.close_code
                return False
            if '"room.join"' in str(frame) and f'"{user_id}"' in str(frame):
                return True


async def test_sockets_per_user_room_and_presence_across_processes(
    gateway_factory: GatewayFactory,
) -> None:
    one = await gateway_factory(**SECURITY_DEFAULTS)
    two = await gateway_factory(**SECURITY_DEFAULTS)
    limit = SECURITY_DEFAULTS["limit_websockets_per_user"]
    async with AsyncExitStack() as stack:
        rooms = [await stack.enter_async_context(client(one, "u_many")) for _ in range(limit // 2)]
        for _ in range(limit - len(rooms)):
            await _open_presence(stack, two, "u_many")
        # Both kinds, both processes: the next one of either kind is closed with 4429.
        async with connect(room_url(two, GENERAL, "u_many"), compression=None) as extra:
            assert await close_code(extra) == TOO_MANY
        async with connect(presence_url(one, "u_many"), compression=None) as extra:
            assert await close_code(extra) == TOO_MANY
        assert await _admitted(one, "u_other")  # other users are not affected
        # Existing sockets still work; closing one frees its place.
        await rooms[0].roundtrip()
        await rooms[0].ws.close()
        await wait_until(lambda: _admitted(two, "u_many"), timeout=10)


async def test_sockets_of_a_killed_process_do_not_count_forever(
    gateway_factory: GatewayFactory,
) -> None:
    limits = {**SECURITY_DEFAULTS, "limit_websockets_per_user": 2, "ws_member_lease_seconds": 3}
    survivor = await gateway_factory(**limits)
    victim = await GatewayProcess(make_settings(**limits)).start()
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(client(victim, "u_ann"))
            await _open_presence(stack, victim, "u_ann")
            assert not await _admitted(survivor, "u_ann")
            victim.kill()
            # Its lease lapses and its sockets stop counting: the user gets back in.
            await wait_until(lambda: _admitted(survivor, "u_ann"), timeout=15, interval=0.2)
    finally:
        await victim.stop()


async def test_sockets_close_4401_when_the_token_expires(
    gateway_factory: GatewayFactory,
) -> None:
    gw = await gateway_factory(**SECURITY_DEFAULTS)
    token = mint_token(gw.settings.jwt_secret, "u_brief", ttl_seconds=3)
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(client(gw, "u_watch"))
        room = await stack.enter_async_context(
            connect(room_url(gw, GENERAL, "u_brief", token=token), compression=None)
        )
        assert '"room.join"' in str(await asyncio.wait_for(room.recv(), 10))
        presence = await stack.enter_async_context(
            connect(presence_url(gw, "u_brief", token=token), compression=None)
        )
        assert await close_code(room, timeout=15) == EXPIRED
        assert await close_code(presence, timeout=15) == EXPIRED
        leave = await watcher.until(lambda f: f["event"] == "room.leave", timeout=10)
        assert leave["user_id"] == "u_brief"


async def test_unstorable_values_on_the_socket_are_invalid_input(
    gateway: InProcessGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with client(gateway, "u_ann") as ann:
        await ann.send(
            {
                "event": "room.message.send",
                "room_id": GENERAL,
                "body": "x",
                "client_msg_id": "a\x00b",
            }
        )
        assert (await ann.next("error"))["code"] == "invalid_input"
        await ann.send({"event": "room.join", "room_id": "room_city_a\x00b"})
        assert (await ann.next("error"))["code"] == "room_not_found"
        await ann.roundtrip()  # still open
    rest = await gateway.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "x", "client_msg_id": "a\x00b"},
        headers=gateway.auth("u_ann"),
    )
    assert (rest.status_code, rest.json()["code"]) == (422, "invalid_input")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_killed_process_members_vanish_within_the_lease_setting(
    gateway_factory: GatewayFactory, redis_client: object
) -> None:
    """README: a dead process's members leave members_online within WS_MEMBER_LEASE_SECONDS.

    The process is killed right after it renewed its lease (the worst moment), and
    the clock runs from the kill.
    """
    lease = 4.0
    survivor = await gateway_factory(ws_member_lease_seconds=lease)
    victim = await GatewayProcess(make_settings(ws_member_lease_seconds=lease)).start()
    redis = survivor.runtime.redis
    procs_key = survivor.runtime.realtime.members._procs_key  # hash-tagged on a cluster
    mine = survivor.runtime.realtime.members.process_id
    try:
        async with client(victim, "u_ann"):
            assert await online(survivor) == (1, 1)

            async def victim_lease() -> float | None:
                for pid, score in await redis.zrange(procs_key, 0, -1, withscores=True):
                    if pid != mine:
                        return float(score)
                return None

            before = await wait_until(victim_lease)
            await wait_until(lambda: _changed(victim_lease, before), interval=0.005)
            victim.kill()
            killed = time.monotonic()
            await wait_until(lambda: _online_is(survivor, 0), timeout=lease + 10, interval=0.05)
            assert time.monotonic() - killed <= lease
    finally:
        await victim.stop()


async def _changed(read: object, before: float) -> bool:
    value = await read()  # type: ignore[operator]
    return value is not None and value != before


async def _online_is(gw: Gateway, expected: int) -> bool:
    return await online(gw) == (expected, expected)
