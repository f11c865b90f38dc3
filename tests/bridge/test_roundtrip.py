"""A city user and an Element user talk in the same room, through a real Synapse."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect

from gateway.core.models import Message
from tests.bridge.conftest import BridgeEnv, MakeElement, PortGateway, StartBridged, city_body
from tests.servers import wait_until


async def test_city_and_element_users_talk_in_one_room(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    posted: list[Message] = []

    async def collect(message: Message) -> None:
        posted.append(message)

    bridged.runtime.hooks.message_posted.append(collect)

    room = (await bridged.http.get("/city/rooms/room_city_general")).json()["room"]
    assert room["matrix_alias"] == bridge_env.alias("general")
    assert room["matrix_room_id"].startswith("!")

    alice = await element()
    matrix_room = await alice.join(bridge_env.alias("general"))
    assert matrix_room == room["matrix_room_id"]

    # City → Matrix: sent by the author's ghost, display name from the token.
    text = f"hello from the city {secrets.token_hex(3)}"
    resp = await bridged.http.post(
        "/city/rooms/room_city_general/messages",
        json={"body": text},
        headers=bridged.auth("u_1", "Olena"),
    )
    assert resp.status_code == 201, resp.text
    city_id = resp.json()["id"]
    ghost = bridge_env.user_id("city_u_1")
    event = await alice.wait_for_message(matrix_room, lambda e: city_body(e) == text)
    assert event["sender"] == ghost
    assert event["content"]["city.message_id"] == city_id
    profile = httpx.get(
        f"{bridge_env.hs.base_url}/_matrix/client/v3/profile/{ghost}/displayname"
    ).json()
    assert profile["displayname"] == "Olena"
    # The sender records the event id after Synapse answers, which may be just
    # after Alice's sync already shows the event: wait for it, don't race it.
    stored = await wait_until(
        lambda: db.fetchval("select matrix_event_id from city_room_messages where id = $1", city_id)
    )
    assert stored == event["event_id"]

    # Matrix → City: a city WebSocket client, history, feed, once each.
    ws = await connect(
        f"{bridged.ws_url}/ws/city/rooms/room_city_general?token={bridged.token('u_2')}"
    )
    reply = f"hi from element {secrets.token_hex(3)}"
    try:
        event_id = await alice.send(matrix_room, reply)
        frame = await _next_message_frame(ws, reply)
    finally:
        await ws.close()
    assert frame["room_id"] == "room_city_general"
    assert frame["message"]["author_matrix_id"] == alice.user_id

    async def in_history() -> dict[str, object] | None:
        page = (await bridged.http.get("/city/rooms/room_city_general")).json()
        return next((m for m in page["messages"] if m["body"] == reply), None)

    message = await wait_until(in_history, timeout=15)
    assert message["author_matrix_id"] == alice.user_id
    assert message["author_user_id"] is None
    feed = (await bridged.http.get("/city/feed")).json()
    items = [f for f in feed if f["payload"]["body"] == reply]
    assert len(items) == 1
    assert items[0]["kind"] == "room_message"
    assert items[0]["payload"]["source"] == "matrix"
    assert [m.body for m in posted if m.body == reply] == [reply]
    assert (
        await db.fetchval(
            "select count(*) from city_room_messages where matrix_event_id = $1", event_id
        )
        == 1
    )
    # The ghost's own message came back to the appservice and was dropped as an echo.
    await wait_until(
        lambda: db.fetchval("select state from matrix_inbox where event_id = $1", stored),
        timeout=10,
    )
    assert await db.fetchval("select state from matrix_inbox where event_id = $1", stored) == (
        "dropped"
    )
    assert await db.fetchval("select count(*) from city_room_messages") == 2


async def _next_message_frame(ws: ClientConnection, body: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("event") == "room.message" and frame["message"]["body"] == body:
                return dict(frame)

    return await asyncio.wait_for(read(), 15)


async def test_ghost_display_name_follows_the_token(
    bridged: PortGateway, bridge_env: BridgeEnv
) -> None:
    user = f"u_n{secrets.token_hex(3)}"
    ghost = bridge_env.user_id(f"city_{user}")
    for name in ("First Name", "Second Name"):
        resp = await bridged.http.post(
            "/city/rooms/room_city_welcome/messages",
            json={"body": f"I am {name}"},
            headers=bridged.auth(user, name),
        )
        assert resp.status_code == 201

        async def shown(expected: str = name) -> bool:
            async with httpx.AsyncClient(base_url=bridge_env.hs.base_url) as http:
                resp = await http.get(f"/_matrix/client/v3/profile/{ghost}/displayname")
            return resp.status_code == 200 and resp.json().get("displayname") == expected

        await wait_until(shown, timeout=15, interval=0.1)


async def test_wrong_as_token_is_reported_by_readyz(
    start_bridged: StartBridged, bridge_env: BridgeEnv
) -> None:
    gw = await start_bridged(wait=False, matrix_as_token="as_" + secrets.token_urlsafe(24))

    async def reason() -> str | None:
        resp = await gw.http.get("/readyz")
        check: str = resp.json()["checks"]["synapse"]
        return check if resp.status_code == 503 and "MATRIX_AS_TOKEN" in check else None

    assert "registration" in await wait_until(reason, timeout=15)
    # The city API serves regardless.
    resp = await gw.http.post(
        "/city/rooms/room_city_general/messages", json={"body": "hi"}, headers=gw.auth("u_1")
    )
    assert resp.status_code == 201
