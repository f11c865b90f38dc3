"""Issue 9 item 2: Matrix may remove or edit a city message only with the right to.

Synapse passes on redactions from unprivileged federated users (room versions ≥ 3
check them only when serving), so a forged one is pushed here straight to the
appservice transaction route, as Synapse would deliver it. Real Element users
(matrix-nio) redact through Synapse itself.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import asyncpg
import httpx
import nio

from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway
from tests.servers import wait_until

TXN = "/_matrix/app/v1/transactions/{}"
MALLORY = "@mallory:evil.example"


async def _push(gw: PortGateway, env: BridgeEnv, *events: dict[str, Any]) -> None:
    """Deliver events as Synapse does; they are processed before the 200."""
    resp = await gw.http.put(
        TXN.format(secrets.token_hex(8)),
        json={"events": list(events)},
        headers={"Authorization": f"Bearer {env.hs.hs_token}"},
    )
    assert resp.status_code == 200, resp.text


def _redaction(room_id: str, sender: str, target: str) -> dict[str, Any]:
    return {
        "event_id": f"${secrets.token_urlsafe(16)}",
        "type": "m.room.redaction",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": 1,
        "redacts": target,
        "content": {"redacts": target},
    }


def _edit(room_id: str, sender: str, target: str, body: str) -> dict[str, Any]:
    return {
        "event_id": f"${secrets.token_urlsafe(16)}",
        "type": "m.room.message",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": 1,
        "content": {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        },
    }


async def _city_post(gw: PortGateway, db: asyncpg.Connection, body: str) -> tuple[str, str]:
    """A city message delivered to Matrix: (city id, Matrix event id)."""
    resp = await gw.http.post(
        "/city/rooms/room_city_general/messages",
        json={"body": body},
        headers=gw.auth("u_red", "Red"),
    )
    assert resp.status_code == 201, resp.text
    message_id: str = resp.json()["id"]
    event_id: str = await wait_until(
        lambda: db.fetchval(
            "select matrix_event_id from city_room_messages where id = $1", message_id
        ),
        timeout=30,
    )
    return message_id, event_id


async def _element_post(el: Element, room_id: str, db: asyncpg.Connection, body: str) -> str:
    event_id = await el.send(room_id, body)
    await wait_until(
        lambda: db.fetchval(
            "select id from city_room_messages where matrix_event_id = $1", event_id
        ),
        timeout=30,
    )
    return event_id


async def _present(db: asyncpg.Connection, event_id: str) -> tuple[str | None, int]:
    """The city copy's body (None if gone) and how many feed events it has."""
    row = await db.fetchrow(
        "select id, body from city_room_messages where matrix_event_id = $1", event_id
    )
    if row is None:
        return None, 0
    feed = await db.fetchval(
        "select count(*) from city_feed_events where payload->>'message_id' = $1", row["id"]
    )
    return row["body"], int(feed)


async def _gone(db: asyncpg.Connection, event_id: str) -> bool:
    return (await _present(db, event_id))[0] is None


def _ignored(metrics_text: str, reason: str) -> float:
    match = re.search(
        rf'^city_matrix_events_ignored_total{{reason="{reason}"}} (\S+)$',
        metrics_text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


async def _grant(env: BridgeEnv, matrix_room: str, user_id: str, level: int) -> str:
    """The bot (room creator, level 100) gives `user_id` a power level."""
    url = f"{env.hs.base_url}/_matrix/client/v3/rooms/{matrix_room}/state/m.room.power_levels/"
    async with httpx.AsyncClient(timeout=30) as http:
        current = await http.get(url, headers=env.hs.as_headers)
        assert current.status_code == 200, current.text
        content = current.json()
        content.setdefault("users", {})[user_id] = level
        resp = await http.put(url, json=content, headers=env.hs.as_headers)
        assert resp.status_code == 200, resp.text
        event_id: str = resp.json()["event_id"]
        return event_id


async def test_only_authors_and_moderators_remove_city_messages(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    rooms = {r["id"]: r["matrix_room_id"] for r in (await bridged.http.get("/city/rooms")).json()}
    general, welcome = rooms["room_city_general"], rooms["room_city_welcome"]
    alice, bob = await element(), await element()
    assert await alice.join(bridge_env.alias("general")) == general
    await bob.join(general)

    city_1, city_1_event = await _city_post(bridged, db, "city message one")
    _, city_2_event = await _city_post(bridged, db, "city message two")
    alice_1 = await _element_post(alice, general, db, "alice one")
    alice_2 = await _element_post(alice, general, db, "alice two")
    before = (await bridged.http.get("/metrics")).text

    # A federated nobody redacts a city message and an Element user's message, and
    # (from a room of their own) another city message: nothing happens.
    await _push(
        bridged,
        bridge_env,
        _redaction(general, MALLORY, city_1_event),
        _redaction(general, MALLORY, alice_1),
        _redaction("!theirs:evil.example", MALLORY, city_2_event),
        _edit(general, MALLORY, city_1_event, "defaced"),
        _edit(general, MALLORY, alice_1, "defaced"),
    )
    # Someone else's edit through Synapse is not applied either.
    hijack = await bob.send(
        general,
        "* hijacked",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "hijacked"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": alice_2},
        },
    )
    await wait_until(
        lambda: db.fetchval(
            "select state <> 'pending' from matrix_inbox where event_id = $1", hijack
        ),
        timeout=30,
    )
    assert await _present(db, city_1_event) == ("city message one", 1)
    assert await _present(db, city_2_event) == ("city message two", 1)
    assert await _present(db, alice_1) == ("alice one", 1)
    assert await _present(db, alice_2) == ("alice two", 1)
    feed = await bridged.http.get("/city/feed")
    assert city_1 in feed.text
    after = (await bridged.http.get("/metrics")).text
    for reason, count in (
        ("redaction_not_permitted", 2),
        ("redaction_other_room", 1),
        ("edit_not_author", 3),
    ):
        assert _ignored(after, reason) - _ignored(before, reason) == count, reason
    assert welcome != general

    # The author redacts their own message: removed, with its feed event.
    redacted = await alice.client.room_redact(general, alice_1, reason="mine")
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    await wait_until(lambda: _gone(db, alice_1), timeout=30)
    assert (await _present(db, alice_1)) == (None, 0)

    # A moderator (the room's `redact` level) removes a city message.
    await _grant(bridge_env, general, bob.user_id, 50)
    redacted = await bob.client.room_redact(general, city_1_event, reason="moderation")
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    await wait_until(lambda: _gone(db, city_1_event), timeout=30)

    # Power given to the federated user reaches the bridge as a state event and
    # replaces what it cached: the same forged redaction now applies.
    granted = await _grant(bridge_env, general, MALLORY, 50)
    await wait_until(
        lambda: db.fetchval("select 1 from matrix_inbox where event_id = $1", granted),
        timeout=30,
    )
    await _push(bridged, bridge_env, _redaction(general, MALLORY, city_2_event))
    assert await _gone(db, city_2_event)
