"""Issue 13: ghost presence is mirrored only while a real Matrix user can see the ghost.

Every heartbeating city user used to get a Matrix account and a presence PUT every
refresh period. Now a ghost's presence goes to Synapse only while it shares a room
with a joined real Matrix user (bridge/presence_audience.py): it starts when an
Element user joins (or the ghost joins a room with one), it stops when they leave,
and a heartbeat alone registers no ghost.

Each test uses a fresh city room: the session's Synapse keeps Element users of
earlier tests joined to #city_general.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import asyncpg
import httpx
import nio
from prometheus_client import REGISTRY

from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway, StartBridged
from tests.bridge.test_presence_mirror import PRESENCE_WAIT, _presence, _wait_presence
from tests.servers import wait_until

BEAT = "/internal/matrix/presence/online"
REFRESH = 1.0


def _hidden(kind: str) -> float:
    value = REGISTRY.get_sample_value("city_matrix_presence_hidden_total", {"kind": kind})
    return value or 0.0


async def _beat(gw: PortGateway, user: str, status: str = "online") -> None:
    body = {"user_id": user, "device_id": "tab", "status": status}
    r = await gw.http.post(BEAT, json=body, headers=gw.auth(user))
    assert r.status_code == 200 and r.json()["status"] == status, r.text


async def _fresh_room(gw: PortGateway) -> tuple[str, str]:
    """A new bridged city room (no Element user in it yet): (city id, Matrix id)."""
    slug = f"vis{secrets.token_hex(4)}"
    body = {"name": f"Visibility {slug}", "slug": slug}
    created = await gw.http.post("/city/rooms", json=body, headers=gw.auth("u_vis_owner"))
    assert created.status_code == 201, created.text
    room_id: str = created.json()["id"]

    async def mapped() -> str | None:
        room = (await gw.http.get(f"/city/rooms/{room_id}")).json()["room"]
        matrix_room_id: str | None = room.get("matrix_room_id")
        return matrix_room_id

    return room_id, await wait_until(mapped, timeout=30)


async def _post(gw: PortGateway, room_id: str, user: str, body: str) -> None:
    r = await gw.http.post(
        f"/city/rooms/{room_id}/messages", json={"body": body}, headers=gw.auth(user)
    )
    assert r.status_code == 201, r.text


async def _synapse_knows(env: BridgeEnv, user_id: str) -> bool:
    async with httpx.AsyncClient(base_url=env.hs.base_url) as http:
        r = await http.get(
            f"/_matrix/client/v3/profile/{quote(user_id)}", headers=env.hs.as_headers
        )
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


async def test_heartbeat_nobody_on_matrix_sees_sends_nothing_and_registers_no_ghost(
    start_bridged: StartBridged, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    gw = await start_bridged(matrix_presence_refresh_seconds=REFRESH)
    mirror = gw.bridge.presence
    user = "u_unseen"
    ghost = bridge_env.user_id(f"city_{user}")
    sent_before, hidden_before = mirror.sent, mirror.hidden

    await _beat(gw, user, "online")
    await wait_until(lambda: mirror.hidden >= hidden_before + 1, timeout=30)
    await _beat(gw, user, "away")
    await wait_until(lambda: mirror.hidden >= hidden_before + 2, timeout=30)

    # The city has the user; Matrix has nothing of them.
    r = await gw.http.get("/city/presence", params={"user_id": user})
    assert r.json()["users"][0]["status"] == "away", r.text
    assert (
        await db.fetchval("select count(*) from matrix_ghosts where matrix_user_id = $1", ghost)
        == 0
    )
    assert not await _synapse_knows(bridge_env, ghost)
    # Nothing is due, whatever the sweep: no PUT was or will be sent for the ghost.
    assert await mirror.sweep() == 0
    assert mirror.sent == sent_before
    await wait_until(lambda: mirror.idle, timeout=10)


async def test_presence_starts_when_element_joins_and_stops_when_it_leaves(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    db: asyncpg.Connection,
) -> None:
    # A long TTL: the one heartbeat keeps the user online for the whole test.
    gw = await start_bridged(matrix_presence_refresh_seconds=REFRESH, presence_ttl_seconds=600)
    mirror = gw.bridge.presence
    room_id, matrix_room = await _fresh_room(gw)
    user = "u_seen_later"
    ghost = bridge_env.user_id(f"city_{user}")

    # The ghost joins the Matrix room by posting; nobody real is there yet.
    await _post(gw, room_id, user, "anyone?")

    async def ghost_joined() -> bool:
        return bool(
            await db.fetchval(
                "select 1 from matrix_memberships where matrix_user_id = $1"
                " and matrix_room_id = $2",
                ghost,
                matrix_room,
            )
        )

    await wait_until(ghost_joined, timeout=30)
    hidden_before, sent_before = mirror.hidden, mirror.sent
    await _beat(gw, user, "online")
    await wait_until(lambda: mirror.hidden >= hidden_before + 1, timeout=30)
    assert mirror.sent == sent_before  # hidden: recorded, not sent
    row = await db.fetchrow(
        "select presence, presence_sent from matrix_ghosts where matrix_user_id = $1", ghost
    )
    assert row is not None and tuple(row) == ("online", False), row

    # An Element user joins: the ghost's presence shows up, without waiting for a
    # refresh (a hidden ghost is next looked at minutes later).
    alice = await element()
    assert await alice.join(matrix_room) == matrix_room
    await _wait_presence(alice, ghost, "online", PRESENCE_WAIT)
    assert mirror.shown >= 1
    # Visible: refreshed like any mirrored ghost.
    refreshed = mirror.sent
    await wait_until(lambda: mirror.sent >= refreshed + 2, timeout=30)

    # Alice leaves: the next refresh finds the ghost hidden and parks it; no more PUTs.
    parked_before, hidden_at_leave = _hidden("refresh"), mirror.hidden
    left = await alice.client.room_leave(matrix_room)
    assert isinstance(left, nio.RoomLeaveResponse), left

    async def parked() -> bool:
        row = await db.fetchrow(
            """select presence_sent, presence_due_at > now() + interval '60 seconds' as later
               from matrix_ghosts where matrix_user_id = $1""",
            ghost,
        )
        return row is not None and tuple(row) == (False, True)

    await wait_until(parked, timeout=30)
    assert _hidden("refresh") > parked_before, (
        await db.fetchrow("select * from matrix_ghosts where matrix_user_id = $1", ghost),
        mirror.hidden - hidden_at_leave,
    )
    await wait_until(lambda: mirror.idle, timeout=10)
    stopped = mirror.sent
    for _ in range(3):  # what the refresh loop does every second: nothing for the ghost
        await mirror.sweep()
    assert mirror.sent == stopped
    # Another heartbeat transition while hidden is recorded, not sent.
    await _beat(gw, user, "away")
    await wait_until(lambda: mirror.hidden >= hidden_before + 2, timeout=30)
    assert mirror.sent == stopped


async def test_ghost_joining_a_room_with_an_element_user_shows_its_presence(
    start_bridged: StartBridged, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    # The refresh is far away: only the ghost's join can bring its presence to Matrix.
    gw = await start_bridged(matrix_presence_refresh_seconds=600)
    mirror = gw.bridge.presence
    room_id, matrix_room = await _fresh_room(gw)
    alice: Element = await element()
    await alice.join(matrix_room)
    user = "u_speaks_up"
    ghost = bridge_env.user_id(f"city_{user}")

    # Online long before the ghost exists: nothing is sent, nobody is registered.
    hidden_before = mirror.hidden
    await _beat(gw, user, "online")
    await wait_until(lambda: mirror.hidden >= hidden_before + 1, timeout=30)
    assert not await _synapse_knows(bridge_env, ghost)

    # Posting joins the ghost to Alice's room: its presence follows.
    await _post(gw, room_id, user, "hello alice")
    await alice.wait_for_message(matrix_room, lambda e: e["content"].get("body") == "hello alice")
    await _wait_presence(alice, ghost, "online", PRESENCE_WAIT)
    assert (await _presence(alice, ghost)).presence == "online"
