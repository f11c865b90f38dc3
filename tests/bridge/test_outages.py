"""Nothing lost, nothing doubled: Synapse down or restarting, the gateway away."""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncpg
import httpx
import pytest

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
    MakeElement,
    PortGateway,
    StartBridged,
    city_ids_in,
    matrix_history,
)
from tests.servers import Gateway, wait_until

# The insert as the gateway runs it with the bridge on: the outbox row in the same statement.
QUEUED_INSERT = insert_statement(OutboxQueue().queue_statement(STORED, AUTHOR_NAME))

ROOMS = ("room_city_general", "room_city_welcome")


async def _post(gw: Gateway, room_id: str, user: str, body: str) -> str:
    resp = await gw.http.post(
        f"/city/rooms/{room_id}/messages", json={"body": body}, headers=gw.auth(user, user)
    )
    assert resp.status_code == 201, resp.text
    message_id: str = resp.json()["id"]
    return message_id


async def _matrix_rooms(gw: Gateway) -> dict[str, str]:
    rooms = (await gw.http.get("/city/rooms")).json()
    return {r["id"]: r["matrix_room_id"] for r in rooms}


async def _outbox_empty(db: asyncpg.Connection) -> bool:
    return await db.fetchval("select count(*) from matrix_outbox") == 0


async def assert_delivered_once_in_order(
    env: BridgeEnv, gw: Gateway, db: asyncpg.Connection, posted: dict[str, list[str]]
) -> None:
    """Every posted message is in its Matrix room exactly once, in posting order."""
    await wait_until(lambda: _outbox_empty(db), timeout=60, interval=0.1)
    matrix_rooms = await _matrix_rooms(gw)
    for room_id, ids in posted.items():
        history = await matrix_history(env, matrix_rooms[room_id])
        assert city_ids_in(history, set(ids)) == ids, room_id
    missing = await db.fetchval(
        "select count(*) from city_room_messages"
        " where author_user_id is not null and matrix_event_id is null"
    )
    assert missing == 0


@pytest.fixture
async def synapse_back(bridge_env: BridgeEnv):  # type: ignore[no-untyped-def]
    """Whatever a test does to Synapse, it runs again afterwards."""
    yield
    if not bridge_env.hs.process.running:
        await bridge_env.hs.process.start()


async def test_synapse_down_while_city_users_post(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection, synapse_back: None
) -> None:
    await bridge_env.hs.process.stop()
    posted: dict[str, list[str]] = {r: [] for r in ROOMS}
    for i in range(30):
        room = ROOMS[i % 2]
        posted[room].append(await _post(bridged, room, f"u_{i % 3}", f"offline {i}"))

    # The city API keeps serving; /readyz says why it is not ready.
    async def not_ready() -> str | None:
        resp = await bridged.http.get("/readyz")
        reason: str = resp.json()["checks"]["synapse"]
        return reason if resp.status_code == 503 else None

    assert "unreachable" in await wait_until(not_ready, timeout=10)
    page = (await bridged.http.get("/city/rooms/room_city_general")).json()
    assert len(page["messages"]) == 15
    assert await db.fetchval("select count(*) from matrix_outbox") == 30

    await bridge_env.hs.process.start()
    await assert_delivered_once_in_order(bridge_env, bridged, db, posted)
    await wait_until(lambda: _synapse_ok(bridged), timeout=10, interval=0.1)


async def _synapse_ok(gw: Gateway) -> bool:
    # Only the bridge's check: other parts' checks are not this file's business.
    checks = (await gw.http.get("/readyz")).json()["checks"]
    return bool(checks["synapse"] == "ok")


async def test_synapse_restart_mid_stream(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection, synapse_back: None
) -> None:
    posted: dict[str, list[str]] = {r: [] for r in ROOMS}
    restarted = asyncio.Event()

    async def produce() -> None:
        for i in range(80):
            room = ROOMS[i % 2]
            posted[room].append(await _post(bridged, room, f"u_{i % 4}", f"stream {i}"))
            if i == 25:
                restarted.set()
            await asyncio.sleep(0.01)  # a steady stream, not one burst

    producer = asyncio.create_task(produce())
    await restarted.wait()
    await bridge_env.hs.process.stop()
    await bridge_env.hs.process.start()
    await producer
    await assert_delivered_once_in_order(bridge_env, bridged, db, posted)


async def test_gateway_away_while_element_users_write(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    db: asyncpg.Connection,
) -> None:
    first = await start_bridged()
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    await first.stop()

    bodies = [f"while you were away {i} {secrets.token_hex(2)}" for i in range(5)]
    event_ids = [await alice.send(room_id, body) for body in bodies]

    # Synapse queued the transactions; the next gateway's ping makes it deliver now.
    await start_bridged()

    async def arrived() -> bool:
        n = await db.fetchval(
            "select count(*) from city_room_messages where matrix_event_id = any($1::text[])",
            event_ids,
        )
        return bool(n == len(event_ids))

    await wait_until(arrived, timeout=30, interval=0.1)
    rows = await db.fetch(
        "select body from city_room_messages where author_matrix_id = $1 order by seq",
        alice.user_id,
    )
    assert [r["body"] for r in rows] == bodies


async def test_start_with_synapse_down_serves_the_city_and_catches_up(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    db: asyncpg.Connection,
    synapse_back: None,
) -> None:
    await bridge_env.hs.process.stop()
    gw = await start_bridged(wait=False)
    assert (await gw.http.get("/healthz")).status_code == 200
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 503
    assert "Synapse" in ready.json()["checks"]["synapse"]
    assert ready.json()["checks"]["postgres"] == "ok"
    message_id = await _post(gw, "room_city_general", "u_1", "before Synapse")

    await bridge_env.hs.process.start()
    await gw.started_bridge()
    await assert_delivered_once_in_order(bridge_env, gw, db, {"room_city_general": [message_id]})
    await wait_until(lambda: _synapse_ok(gw), timeout=10, interval=0.1)


async def test_uncertain_send_is_looked_up_before_sending_again(
    bridged: PortGateway, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    """A send whose answer was lost, after Synapse forgot the txnId: no second event."""
    matrix_room = (await _matrix_rooms(bridged))["room_city_general"]
    ghost = bridge_env.user_id("city_u_lost")
    message_id = new_message_id()
    await bridged.bridge.join(matrix_room, ghost)
    # The event our first attempt created (under a txnId Synapse no longer knows).
    async with httpx.AsyncClient(base_url=bridge_env.hs.base_url) as http:
        resp = await http.put(
            f"/_matrix/client/v3/rooms/{matrix_room}/send/m.room.message/first-{message_id}",
            params={"user_id": ghost},
            headers=bridge_env.hs.as_headers,
            json={"msgtype": "m.text", "body": "sent once", "city.message_id": message_id},
        )
    first_event = resp.json()["event_id"]
    # Its echo has come and gone before the city row exists, so only the lookup helps.
    await wait_until(
        lambda: db.fetchval("select state from matrix_inbox where event_id = $1", first_event),
        timeout=15,
    )
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    async with db.transaction():
        await insert_message(
            db,
            NewMessage(
                id=message_id,
                room_id="room_city_general",
                body="sent once",
                author_user_id="u_lost",
            ),
            NewFeedEvent(
                id=new_feed_event_id(),
                kind="room_message",
                payload={"body": "sent once", "source": "city"},
            ),
            queued=QUEUED_INSERT,
        )
        await db.execute("update matrix_outbox set uncertain = true, attempts = 1")
    bridged.bridge.outbox.nudge("room_city_general")
    await wait_until(lambda: _outbox_empty(db), timeout=15)
    history = await matrix_history(bridge_env, matrix_room)
    assert city_ids_in(history, {message_id}) == [message_id]
    stored = await db.fetchval(
        "select matrix_event_id from city_room_messages where id = $1", message_id
    )
    assert stored == first_event
