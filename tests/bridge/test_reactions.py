"""Reactions both ways across the bridge (SPEC §13), against the real Synapse.

Element (matrix-nio) reacts to a city message → a city reaction with
`matrix_user_id`, `room.reaction` on the room's sockets, counted in `reactions`;
its redaction removes it, but only from the reactor (or someone with the room's
`redact` power). A city reaction → an `m.reaction` annotation sent as the ghost,
once even with two gateway processes and a PUT repeated through both; its DELETE →
a redaction of that annotation, once. Our ghosts' echoes add nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote

import asyncpg
import nio

from tests.bridge.conftest import (
    BridgeEnv,
    MakeElement,
    PortGateway,
    timeline,
    two_processes,
)
from tests.bridge.test_city_edits import (
    GENERAL,
    element_sees,
    event_of,
    matrix_room,
    outbox_empty,
    post,
    redactions,
)
from tests.bridge.test_hardening_redactions import _push, _redaction
from tests.realtime.test_ws_rooms import client
from tests.servers import Gateway, wait_until


def _url(message_id: str, key: str) -> str:
    return f"/city/rooms/{GENERAL}/messages/{message_id}/reactions/{quote(key, safe='')}"


async def _reactions_seen(gw: Gateway, message_id: str, user: str | None = None) -> Any:
    headers = gw.auth(user) if user else {}
    page = (await gw.http.get(f"/city/rooms/{GENERAL}", headers=headers)).json()
    return next(m["reactions"] for m in page["messages"] if m["id"] == message_id)


async def _react(alice: Any, room: str, target: str, key: str) -> str:
    resp = await alice.client.room_send(
        room,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}},
    )
    assert isinstance(resp, nio.RoomSendResponse), resp
    event_id: str = resp.event_id
    return event_id


async def _inbox_state(db: asyncpg.Connection, event_id: str) -> str | None:
    state: str | None = await db.fetchval(
        "select state from matrix_inbox where event_id = $1 and state <> 'pending'", event_id
    )
    return state


async def test_element_reactions_reach_the_city_and_only_the_reactor_removes_them(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement, db: asyncpg.Connection
) -> None:
    alice, bob = await element(), await element()
    room = await alice.join(bridge_env.alias("general"))
    await bob.join(room)
    async with AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(client(bridged, "u_watch"))
        message_id = await post(bridged, "u_writer", "react to this")
        target = await event_of(db, message_id)

        reaction = await _react(alice, room, target, "👍")
        frame = await watcher.next("room.reaction", timeout=30)
        assert frame == {
            "event": "room.reaction",
            "room_id": GENERAL,
            "message_id": message_id,
            "key": "👍",
            "count": 1,
            "matrix_user_id": alice.user_id,
            "added": True,
        }
        resp = await bridged.http.put(_url(message_id, "👍"), headers=bridged.auth("u_watch"))
        assert resp.json()["reactions"] == [{"key": "👍", "count": 2, "me": True}]
        assert await _reactions_seen(bridged, message_id) == [
            {"key": "👍", "count": 2, "me": False}
        ]

        # A redaction of Alice's reaction by someone without redact power (Synapse
        # refuses Bob's locally, but passes on a federated one): it changes nothing.
        # (A fresh id: the session's room may have granted another Mallory power.)
        forged = _redaction(room, f"@mallory_{secrets.token_hex(4)}:evil.example", reaction)
        await _push(bridged, bridge_env, forged)
        assert await _inbox_state(db, forged["event_id"]) == "dropped"
        assert (await _reactions_seen(bridged, message_id))[0]["count"] == 2
        refused = await bob.client.room_redact(room, reaction)
        assert isinstance(refused, nio.RoomRedactError), refused

        mine = await alice.client.room_redact(room, reaction)
        assert isinstance(mine, nio.RoomRedactResponse), mine
        frame = await watcher.until(
            lambda f: f["event"] == "room.reaction" and not f["added"], timeout=30
        )
        assert (frame["matrix_user_id"], frame["count"]) == (alice.user_id, 1)
        await wait_until(lambda: outbox_empty(db), timeout=30, interval=0.05)
        # The ghost's own annotation came back as an echo: still one city reaction.
        marker = await post(bridged, "u_writer", "marker")
        await event_of(db, marker)
        assert await _reactions_seen(bridged, message_id, "u_watch") == [
            {"key": "👍", "count": 1, "me": True}
        ]

        # A city reaction to Element's message shows in Element, from the ghost.
        said = await alice.send(room, "from element")
        said_id = (
            await watcher.until(
                lambda f: (
                    f["event"] == "room.message"
                    and f["message"]["author_matrix_id"] == alice.user_id
                ),
                timeout=30,
            )
        )["message"]["id"]
        resp = await bridged.http.put(_url(said_id, "🎉"), headers=bridged.auth("u_watch"))
        assert resp.status_code == 200
        seen = await element_sees(
            alice,
            room,
            lambda e: (
                e.get("type") == "m.reaction"
                and (e["content"].get("m.relates_to") or {}).get("event_id") == said
            ),
        )
        assert seen["sender"] == bridge_env.user_id("city_u_watch")
        assert seen["content"]["m.relates_to"]["key"] == "🎉"


async def test_city_reactions_reach_matrix_once_from_two_processes(
    clean: None, bridge_env: BridgeEnv, db: asyncpg.Connection
) -> None:
    async with two_processes(bridge_env) as (a, b):
        async with AsyncExitStack() as stack:
            on_a = await stack.enter_async_context(client(a, "u_watch_a"))
            on_b = await stack.enter_async_context(client(b, "u_watch_b"))
            ids = [await post(a, "u_writer", f"react {i}") for i in range(4)]
            users = ["u_r1", "u_r2"]
            # Every user reacts to every message, the same PUT through both processes
            # at once.
            await asyncio.gather(
                *(
                    gw.http.put(_url(mid, "👍"), headers=gw.auth(user))
                    for mid in ids
                    for user in users
                    for gw in (a, b)
                )
            )
            await wait_until(lambda: outbox_empty(db), timeout=60, interval=0.1)
            # Sent; now taken back, the same DELETE through both processes at once.
            removals = await asyncio.gather(
                *(
                    gw.http.delete(_url(mid, "👍"), headers=gw.auth(user))
                    for mid in ids[:2]
                    for user in users
                    for gw in (a, b)
                )
            )
            assert {r.status_code for r in removals} == {200}
            await wait_until(lambda: outbox_empty(db), timeout=60, interval=0.1)

            for sock in (on_a, on_b):
                await sock.roundtrip()
                frames = [f for f in sock.frames if f["event"] == "room.reaction"]
                assert len([f for f in frames if f["added"]]) == len(ids) * len(users)
                assert len([f for f in frames if not f["added"]]) == 2 * len(users)

        events = await timeline(bridge_env, await matrix_room(a))
        targets = {mid: await event_of(db, mid) for mid in ids}
        ghosts = sorted(bridge_env.user_id(f"city_{u}") for u in users)
        # (The session's Synapse keeps the room's earlier tests: only these ghosts'.)
        annotations = [e for e in events if e.get("type") == "m.reaction" and e["sender"] in ghosts]
        # One annotation per (message, user) in all; the removed ones were redacted
        # once each (a redacted annotation keeps no content).
        assert len(annotations) == len(ids) * len(users)
        live = [e for e in annotations if e["content"]]
        removed = [e for e in annotations if not e["content"]]
        assert len(removed) == 2 * len(users)
        for e in removed:
            assert len(redactions(events, e["event_id"])) == 1
        for mid in ids[2:]:
            on_it = [e for e in live if e["content"]["m.relates_to"]["event_id"] == targets[mid]]
            assert sorted(e["sender"] for e in on_it) == ghosts, mid
            assert {e["content"]["m.relates_to"]["key"] for e in on_it} == {"👍"}
        stored = await db.fetch("select matrix_event_id from city_message_reactions")
        assert sorted(r["matrix_event_id"] for r in stored) == sorted(e["event_id"] for e in live)
