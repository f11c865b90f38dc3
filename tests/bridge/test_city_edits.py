"""City edits and deletes reach Matrix (SPEC §13): `m.replace` and redactions as the ghost.

Against the real Synapse, with matrix-nio as the Element user: a city user's PATCH
shows in Element as a replacement of the message, a DELETE as its redaction; with two
gateway processes draining the outbox each change is in the Matrix timeline exactly
once; with Synapse stopped while changes are queued, they arrive once, in order,
when it is back. Edits and redactions from Matrix of city messages still follow the
power-level rules (the ghost is their sender: nobody else's edit applies).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.bridge.conftest import (
    BridgeEnv,
    Element,
    MakeElement,
    PortGateway,
    timeline,
    two_processes,
)
from tests.bridge.test_outages import synapse_back  # noqa: F401
from tests.servers import Gateway, wait_until

GENERAL = "room_city_general"


# --- helpers (also used by test_reactions.py) ------------------------------------------
async def post(gw: Gateway, user: str, body: str, room_id: str = GENERAL) -> str:
    resp = await gw.http.post(
        f"/city/rooms/{room_id}/messages", json={"body": body}, headers=gw.auth(user, user)
    )
    assert resp.status_code == 201, resp.text
    message_id: str = resp.json()["id"]
    return message_id


async def edit(gw: Gateway, user: str, message_id: str, body: str) -> None:
    resp = await gw.http.patch(
        f"/city/rooms/{GENERAL}/messages/{message_id}", json={"body": body}, headers=gw.auth(user)
    )
    assert resp.status_code == 200, resp.text


async def delete(gw: Gateway, user: str, message_id: str) -> None:
    resp = await gw.http.delete(
        f"/city/rooms/{GENERAL}/messages/{message_id}", headers=gw.auth(user)
    )
    assert resp.status_code == 204, resp.text


async def matrix_room(gw: Gateway, room_id: str = GENERAL) -> str:
    room = (await gw.http.get(f"/city/rooms/{room_id}")).json()["room"]
    matrix_room_id: str = room["matrix_room_id"]
    return matrix_room_id


async def event_of(db: asyncpg.Connection, message_id: str) -> str:
    async def known() -> str | None:
        value: str | None = await db.fetchval(
            "select matrix_event_id from city_room_messages where id = $1", message_id
        )
        return value

    found: str = await wait_until(known, timeout=30, interval=0.05)
    return found


async def outbox_empty(db: asyncpg.Connection) -> bool:
    return await db.fetchval("select count(*) from matrix_outbox") == 0


def replacements(events: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("type") == "m.room.message"
        and ((e.get("content") or {}).get("m.relates_to") or {}).get("rel_type") == "m.replace"
        and e["content"]["m.relates_to"].get("event_id") == target
    ]


def redactions(events: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("type") == "m.room.redaction"
        and (e.get("redacts") or (e.get("content") or {}).get("redacts")) == target
    ]


async def element_sees(
    alice: Element, room_id: str, predicate: Any, timeout: float = 30
) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        for event in alice.timeline[room_id]:
            if predicate(event):
                return event
        await alice.sync()
        return None

    result: dict[str, Any] = await wait_until(found, timeout=timeout, interval=0)
    return result


# --- tests -----------------------------------------------------------------------------
async def test_city_edit_and_delete_reach_element(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    alice = await element()
    room = await alice.join(bridge_env.alias("general"))
    ghost = bridge_env.user_id("city_u_writer")
    message_id = await post(bridged, "u_writer", "typo hree")
    original = await event_of(db, message_id)

    await edit(bridged, "u_writer", message_id, "typo here")
    replaced = await element_sees(alice, room, lambda e: bool(replacements([e], original)))
    assert replaced["sender"] == ghost
    assert replaced["content"]["body"] == "* typo here"
    assert replaced["content"]["m.new_content"] == {"msgtype": "m.text", "body": "typo here"}

    await delete(bridged, "u_writer", message_id)
    redaction = await element_sees(alice, room, lambda e: bool(redactions([e], original)))
    assert redaction["sender"] == ghost
    await wait_until(lambda: outbox_empty(db), timeout=30, interval=0.05)
    # The echoes of our own edit and redaction change nothing in the city.
    marker = await post(bridged, "u_writer", "marker")
    await event_of(db, marker)
    rows = await db.fetch("select id, body from city_room_messages order by seq")
    assert [(r["id"], r["body"]) for r in rows] == [(marker, "marker")]


async def test_element_cannot_edit_a_city_message(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    alice = await element()
    room = await alice.join(bridge_env.alias("general"))
    message_id = await post(bridged, "u_writer", "the city's words")
    original = await event_of(db, message_id)
    forged = await alice.send(
        room,
        "* forged",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "forged"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    await wait_until(
        lambda: db.fetchval(
            "select state = 'dropped' from matrix_inbox where event_id = $1", forged
        ),
        timeout=30,
    )
    body = await db.fetchval("select body from city_room_messages where id = $1", message_id)
    assert body == "the city's words"


async def test_two_processes_send_each_change_once(
    clean: None, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    async with two_processes(bridge_env) as (a, b):
        ids = [await post((a, b)[i % 2], "u_pair", f"version 0 of {i}") for i in range(6)]
        # Changes through both processes, several per message, right after posting
        # (some before the message itself has reached Matrix).
        for round_ in range(1, 4):
            await asyncio.gather(
                *(
                    edit((a, b)[(i + round_) % 2], "u_pair", mid, f"version {round_} of {i}")
                    for i, mid in enumerate(ids)
                )
            )
        # A redacted event loses its content (and the city id in it): learn these first.
        originals = {mid: await event_of(db, mid) for mid in ids[:3]}
        for mid in ids[:3]:
            await delete(b, "u_pair", mid)
        await wait_until(lambda: outbox_empty(db), timeout=60, interval=0.1)

        events = await timeline(bridge_env, await matrix_room(a))
        originals.update(
            {
                e["content"]["city.message_id"]: e["event_id"]
                for e in events
                if e.get("type") == "m.room.message" and "city.message_id" in e.get("content", {})
            }
        )
        for i, mid in enumerate(ids):
            target = originals[mid]
            edits = replacements(events, target)
            bodies = [e["content"]["m.new_content"]["body"] for e in edits]
            expected = [f"version {r} of {i}" for r in (1, 2, 3)]
            if i < 3:
                # Edits still queued when the message was deleted are not sent (its
                # redaction follows): a prefix of them, each once.
                assert bodies == expected[: len(bodies)], mid
            else:
                assert bodies == expected, mid
            assert len(redactions(events, target)) == (1 if i < 3 else 0), mid
            # In order: the message, its edits, its redaction.
            positions = [events.index(e) for e in edits + redactions(events, target)]
            assert positions == sorted(positions)
            assert all(
                p > events.index(next(e for e in events if e["event_id"] == target))
                for p in positions
            )


async def test_changes_queued_while_synapse_is_down_arrive_once_in_order(
    bridged: PortGateway,
    bridge_env: BridgeEnv,
    db: asyncpg.Connection,
    synapse_back: None,  # noqa: F811
) -> None:
    sent = await post(bridged, "u_down", "sent before the outage")
    doomed = await post(bridged, "u_down", "sent before the outage, deleted in it")
    sent_event, doomed_event = await event_of(db, sent), await event_of(db, doomed)
    room = await matrix_room(bridged)

    await bridge_env.hs.process.stop()
    await edit(bridged, "u_down", sent, "edited during the outage")
    later = await post(bridged, "u_down", "posted during the outage")
    await edit(bridged, "u_down", later, "posted and edited during the outage")
    gone = await post(bridged, "u_down", "posted and deleted during the outage")
    await delete(bridged, "u_down", gone)
    await delete(bridged, "u_down", doomed)
    resp = await bridged.http.put(
        f"/city/rooms/{GENERAL}/messages/{sent}/reactions/%F0%9F%91%8D",
        headers=bridged.auth("u_fan"),
    )
    assert resp.status_code == 200
    kinds = await db.fetch("select kind from matrix_outbox order by seq")
    assert [r["kind"] for r in kinds] == [
        "edit", "message", "edit", "message", "redact", "redact", "react"
    ]  # fmt: skip

    await bridge_env.hs.process.start()
    await wait_until(lambda: outbox_empty(db), timeout=90, interval=0.1)
    events = await timeline(bridge_env, room)
    later_event = await event_of(db, later)
    edits_of_sent = replacements(events, sent_event)
    edits_of_later = replacements(events, later_event)
    assert [e["content"]["m.new_content"]["body"] for e in edits_of_sent] == [
        "edited during the outage"
    ]
    assert [e["content"]["m.new_content"]["body"] for e in edits_of_later] == [
        "posted and edited during the outage"
    ]
    assert len(redactions(events, doomed_event)) == 1
    reactions = [
        e
        for e in events
        if e.get("type") == "m.reaction"
        and (e["content"].get("m.relates_to") or {}).get("event_id") == sent_event
    ]
    assert len(reactions) == 1
    assert reactions[0]["content"]["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": sent_event,
        "key": "👍",
    }
    assert reactions[0]["sender"] == bridge_env.user_id("city_u_fan")
    # Deleted before it could be sent: it never reaches Matrix, nor does a redaction.
    bodies = [(e.get("content") or {}).get("body") for e in events]
    assert "posted and deleted during the outage" not in bodies
    order = [
        edits_of_sent[0]["event_id"],
        later_event,
        edits_of_later[0]["event_id"],
        redactions(events, doomed_event)[0]["event_id"],
        reactions[0]["event_id"],
    ]
    ours = [e["event_id"] for e in events if e["event_id"] in order]
    assert ours == order
