"""Issue 9 item 7: Matrix shows a room's messages in the order of the city history.

The city's order is the room's message `seq`; the outbox used to drain by its own
ids, which concurrent posts can take in the other order.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import asyncpg
import nio

from bridge.storage import OutboxQueue
from gateway.core.ids import new_feed_event_id, new_message_id
from gateway.core.storage.messages import (
    AUTHOR_NAME,
    STORED,
    NewFeedEvent,
    NewMessage,
    insert_message,
    insert_statement,
)
from tests.bridge.conftest import (
    BridgeEnv,
    Element,
    MakeElement,
    PortGateway,
    StartBridged,
    process_on_port,
)
from tests.servers import Gateway, free_port, wait_until

# The insert as the gateway runs it with the bridge on: the outbox row in the same statement.
QUEUED_INSERT = insert_statement(OutboxQueue().queue_statement(STORED, AUTHOR_NAME))

# Someone waits for the room's order lock (migrations/0004_room_order.sql).
WAITING_FOR_ROOM = """
with k as (select hashtextextended('city_room_seq:' || $1::text, 0) as v)
select count(*) from pg_locks, k
where locktype = 'advisory' and not granted and objsubid = 1
  and database = (select oid from pg_database where datname = current_database())
  and objid::bigint = (k.v & 4294967295)
"""


async def _new_room(gw: Gateway) -> str:
    slug = f"o{secrets.token_hex(4)}"
    resp = await gw.http.post(
        "/city/rooms", json={"name": "Order", "slug": slug}, headers=gw.auth("u_o")
    )
    assert resp.status_code == 201, resp.text
    room_id: str = resp.json()["id"]
    return room_id


async def _matrix_room(gw: Gateway, room_id: str) -> str:
    async def mapped() -> str | None:
        room = (await gw.http.get(f"/city/rooms/{room_id}")).json()["room"]
        value: str | None = room["matrix_room_id"]
        return value

    result: str = await wait_until(mapped, timeout=30)
    return result


async def _city_order(db: asyncpg.Connection, room_id: str) -> list[str]:
    rows = await db.fetch(
        "select id from city_room_messages where room_id = $1 order by seq", room_id
    )
    return [r["id"] for r in rows]


async def _all_delivered(db: asyncpg.Connection, room_id: str) -> bool:
    missing = await db.fetchval(
        """select count(*) from city_room_messages
           where room_id = $1 and matrix_event_id is null""",
        room_id,
    )
    return bool(missing == 0)


async def _timeline(el: Element, matrix_room: str) -> list[str]:
    """City message ids in the Matrix room, oldest first, as an Element user reads them."""
    ids: list[str] = []
    start: str | None = None
    while True:
        resp = await el.client.room_messages(
            matrix_room,
            start=start,  # type: ignore[arg-type]
            direction=nio.MessageDirection.front,
            limit=100,
        )
        assert isinstance(resp, nio.RoomMessagesResponse), resp
        for event in resp.chunk:
            content: dict[str, Any] = event.source.get("content") or {}
            if isinstance(content.get("city.message_id"), str):
                ids.append(content["city.message_id"])
        if not resp.chunk or not resp.end or resp.end == start:
            return ids
        start = resp.end


async def _matrix_matches_city(
    el: Element, gw: Gateway, db: asyncpg.Connection, room_id: str
) -> None:
    matrix_room = await _matrix_room(gw, room_id)
    await wait_until(lambda: _all_delivered(db, room_id), timeout=120, interval=0.2)
    await el.join(matrix_room)
    city = await _city_order(db, room_id)
    assert await _timeline(el, matrix_room) == city


async def _stage(db: asyncpg.Connection, room_id: str, count: int) -> None:
    """Messages whose outbox ids run opposite to their room order (one commit)."""
    async with db.transaction():
        ids = []
        for i in range(count):
            message_id = new_message_id()
            await db.execute(
                """insert into city_room_messages (id, room_id, author_user_id, body)
                   values ($1, $2, 'u_stage', $3)""",
                message_id,
                room_id,
                f"staged {i}",
            )
            ids.append(message_id)
        for message_id in reversed(ids):
            await db.execute(
                "insert into matrix_outbox (room_id, message_id, author_name) values ($1, $2, 'S')",
                room_id,
                message_id,
            )


async def test_outbox_follows_the_room_sequence_not_its_own_ids(
    bridged: PortGateway, element: MakeElement, db: asyncpg.Connection
) -> None:
    room_id = await _new_room(bridged)
    await _matrix_room(bridged, room_id)
    await _stage(db, room_id, 6)
    await _matrix_matches_city(await element(), bridged, db, room_id)


async def test_an_uncommitted_earlier_message_holds_back_later_ones(
    bridged: PortGateway, element: MakeElement, db: asyncpg.Connection
) -> None:
    """A post that drew its seq first but commits last still goes to Matrix first."""
    room_id = await _new_room(bridged)
    await _matrix_room(bridged, room_id)
    early = new_message_id()
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    async with db.transaction():
        await insert_message(
            db,
            NewMessage(id=early, room_id=room_id, body="early", author_user_id="u_early"),
            NewFeedEvent(id=new_feed_event_id(), kind="room_message", payload={"body": "early"}),
            queued=QUEUED_INSERT,
            author_name="Early",
        )
        resp = await bridged.http.post(
            f"/city/rooms/{room_id}/messages",
            json={"body": "late"},
            headers=bridged.auth("u_late", "Late"),
        )
        assert resp.status_code == 201, resp.text
        late = resp.json()["id"]

        # The outbox either sends "late" now (wrong) or waits for "early" to commit.
        async def settled() -> str | None:
            if await bridged.runtime.db.fetchval(
                "select matrix_event_id from city_room_messages where id = $1", late
            ):
                return "sent"
            waiting = await bridged.runtime.db.fetchval(WAITING_FOR_ROOM, room_id)
            return "waiting" if waiting else None

        assert await wait_until(settled, timeout=30) == "waiting"
    assert await _city_order(db, room_id) == [early, late]
    await _matrix_matches_city(await element(), bridged, db, room_id)


async def test_concurrent_posts_reach_matrix_in_city_order(
    clean: None,
    bridge_env: BridgeEnv,
    start_bridged: StartBridged,
    element: MakeElement,
    db: asyncpg.Connection,
) -> None:
    """Two processes, many clients posting to one room at once (the issue: 8 in flight)."""
    other = process_on_port(bridge_env.settings(), free_port())
    gw = await start_bridged()
    await other.start()
    try:
        room_id = await _new_room(gw)
        await _matrix_room(gw, room_id)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(240):
            queue.put_nowait(i)

        async def client(n: int) -> None:
            target = gw if n % 2 else other
            while not queue.empty():
                i = queue.get_nowait()
                resp = await target.http.post(
                    f"/city/rooms/{room_id}/messages",
                    json={"body": f"concurrent {i}"},
                    headers=target.auth(f"u_c{n}", f"C{n}"),
                )
                assert resp.status_code == 201, resp.text

        await asyncio.gather(*(client(n) for n in range(16)))
        await _matrix_matches_city(await element(), gw, db, room_id)
    finally:
        await other.stop()
