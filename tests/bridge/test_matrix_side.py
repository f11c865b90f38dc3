"""What Element users do, through a real Synapse: rooms, edits, redactions, media."""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg
import httpx
import nio

from bridge.inbox import InboundMessage
from tests.bridge.conftest import BridgeEnv, MakeElement, PortGateway
from tests.servers import wait_until


async def _city_message(db: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select id, body, author_matrix_id from city_room_messages where matrix_event_id = $1",
        event_id,
    )


async def test_writing_into_a_room_that_is_not_bridged_creates_nothing(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    heard: list[InboundMessage] = []

    async def listen(message: InboundMessage) -> None:
        heard.append(message)

    bridged.bridge.listeners.messages.append(listen)
    alice = await element()
    created = await alice.client.room_create(
        visibility=nio.RoomVisibility.public, preset=nio.RoomPreset.public_chat, name="Private"
    )
    assert isinstance(created, nio.RoomCreateResponse), created
    # One of our users is in the room, so Synapse pushes its events to the bridge.
    joined = httpx.post(
        f"{bridge_env.hs.base_url}/_matrix/client/v3/join/{created.room_id}",
        params={"user_id": bridge_env.user_id("citybot")},
        headers=bridge_env.hs.as_headers,
        json={},
    )
    assert joined.status_code == 200, joined.text
    event_id = await alice.send(created.room_id, "can I write into the city from here?")

    async def dropped() -> str | None:
        state: str | None = await db.fetchval(
            "select detail from matrix_inbox where event_id = $1 and state = 'dropped'",
            event_id,
        )
        return state

    assert await wait_until(dropped, timeout=15) == "room not bridged"
    assert await db.fetchval("select count(*) from city_room_messages") == 0
    assert await db.fetchval("select count(*) from city_feed_events") == 0
    # Second Me (a DM, say) still hears about it, with no city room.
    assert [(m.event_id, m.city_room_id) for m in heard] == [(event_id, None)]


async def test_edits_and_redactions_follow_the_matrix_message(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    original = await alice.send(room_id, "frist post")
    row = await wait_until(lambda: _city_message(db, original), timeout=15)
    assert row["body"] == "frist post"

    edit = await alice.send(
        room_id,
        "* first post",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "first post"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )

    async def edited() -> bool:
        current = await _city_message(db, original)
        return current is not None and current["body"] == "first post"

    await wait_until(edited, timeout=15)
    assert await _city_message(db, edit) is None  # an edit is not a new message
    feed = json.loads(
        await db.fetchval(
            "select payload from city_feed_events where payload->>'message_id' = $1", row["id"]
        )
    )
    assert feed["body"] == "first post" and feed["edited"] is True

    redacted = await alice.client.room_redact(room_id, original, reason="oops")
    assert isinstance(redacted, nio.RoomRedactResponse), redacted

    async def removed() -> bool:
        return await _city_message(db, original) is None

    await wait_until(removed, timeout=15)
    assert await db.fetchval("select count(*) from city_feed_events") == 0

    # Someone else's edit of the city copy is not accepted.
    bob = await element()
    await bob.join(room_id)
    theirs = await alice.send(room_id, "mine")
    await wait_until(lambda: _city_message(db, theirs), timeout=15)
    hijack = await bob.send(
        room_id,
        "* hijacked",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "hijacked"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": theirs},
        },
    )
    await wait_until(
        lambda: db.fetchval("select state from matrix_inbox where event_id = $1", hijack),
        timeout=15,
    )
    assert (await _city_message(db, theirs))["body"] == "mine"  # type: ignore[index]


async def test_media_emotes_and_notices_become_readable_city_messages(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    contents: list[tuple[dict[str, Any], str]] = [
        (
            {
                "msgtype": "m.image",
                "body": "cat.png",
                "url": f"mxc://{bridge_env.server_name}/abc123",
                "info": {"mimetype": "image/png", "size": 3},
            },
            "cat.png",  # the file is the message's attachment (test_replies_media.py)
        ),
        (
            {
                "msgtype": "m.file",
                "body": "see attached",
                "filename": "report.pdf",
                "url": "mxc://elsewhere.test/pdf",
            },
            "see attached",  # a caption: `filename` is given and differs from `body`
        ),
        ({"msgtype": "m.emote", "body": "waves"}, "* waves"),
        ({"msgtype": "m.notice", "body": "a notice"}, "a notice"),
        (
            {
                "msgtype": "m.text",
                "body": "> <@bob:x> hi\n\nhello back",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$x"}},
            },
            "hello back",
        ),
    ]
    sent: list[tuple[str, str]] = []
    for content, expected in contents:
        resp = await alice.client.room_send(room_id, "m.room.message", content)
        assert isinstance(resp, nio.RoomSendResponse), resp
        sent.append((resp.event_id, expected))
    for event_id, expected in sent:
        row = await wait_until(lambda e=event_id: _city_message(db, e), timeout=15)
        assert row["body"] == expected
        assert row["author_matrix_id"] == alice.user_id


async def test_new_city_room_gets_a_matrix_room_element_can_join(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    slug = f"r{secrets.token_hex(4)}"
    resp = await bridged.http.post(
        "/city/rooms",
        json={"name": "Makers", "slug": slug, "description": "Build things"},
        headers=bridged.auth("u_7"),
    )
    assert resp.status_code == 201, resp.text

    async def mapped() -> str | None:
        room = (await bridged.http.get(f"/city/rooms/room_city_{slug}")).json()["room"]
        value: str | None = room["matrix_room_id"]
        return value

    matrix_room = await wait_until(mapped, timeout=15)
    alice = await element()
    assert await alice.join(bridge_env.alias(slug)) == matrix_room
    state = httpx.get(
        f"{bridge_env.hs.base_url}/_matrix/client/v3/rooms/{matrix_room}/state",
        headers={"Authorization": f"Bearer {alice.client.access_token}"},
    ).json()
    by_type = {e["type"]: e["content"] for e in state if e.get("state_key") == ""}
    assert by_type["m.room.name"]["name"] == "Makers"
    assert by_type["m.room.topic"]["topic"] == "Build things"
    assert by_type["m.room.join_rules"]["join_rule"] == "public"
