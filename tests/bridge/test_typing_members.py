"""Typing both ways, Matrix members in the city, Element users' presence (SPEC §13).

Against the session's real Synapse, with matrix-nio as the Element user. The
registration has `receive_ephemeral: true`, so Synapse pushes typing and presence
EDUs in its transactions (bridge/ephemeral.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import nio
from websockets.asyncio.client import connect

from bridge.ephemeral import EPHEMERAL_EVENTS
from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway, process_on_port
from tests.realtime.test_ws_rooms import GENERAL, Client, client, room_url
from tests.servers import free_port, wait_until

BEAT = "/internal/matrix/presence/online"


class TypingView:
    """Who Element sees typing in a room (m.typing in /sync's ephemeral events)."""

    def __init__(self, el: Element, room_id: str) -> None:
        self._client = el.client
        self._room_id = room_id
        self._since: str | None = None
        self.users: list[str] = []

    async def sync(self) -> list[str]:
        resp = await self._client.sync(timeout=500, since=self._since)
        assert isinstance(resp, nio.SyncResponse), resp
        self._since = resp.next_batch
        room = resp.rooms.join.get(self._room_id)
        if room is not None:
            for event in room.ephemeral:
                if isinstance(event, nio.TypingNoticeEvent):
                    self.users = list(event.users)
        return self.users

    async def until(self, predicate: Callable[[list[str]], bool]) -> list[str]:
        async def seen() -> tuple[list[str]] | None:
            users = await self.sync()
            return (users,) if predicate(users) else None  # a tuple: [] is an answer

        found: tuple[list[str]] = await wait_until(seen, timeout=30, interval=0)
        return found[0]


def _typing(c: Client) -> list[dict[str, Any]]:
    return [f for f in c.frames if f["event"] == "room.typing"]


def _counted(kind: str, outcome: str) -> float:
    return EPHEMERAL_EVENTS.labels(kind, outcome)._value.get()


async def test_city_typing_shows_in_element_and_stops_on_send(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    """A city socket's typing makes the ghost type in Element, and the other city
    socket hears it; sending a message stops both (typing:false)."""
    gw = bridged
    alice = await element()
    general = await alice.join(bridge_env.alias("general"))
    view = TypingView(alice, general)
    await view.sync()
    ghost = bridge_env.user_id("city_u_typer")
    async with client(gw, "u_typer") as typer, client(gw, "u_watch") as watch:
        for _ in range(5):  # keystrokes: coalesced into one frame
            await typer.send({"event": "room.typing", "room_id": GENERAL, "typing": True})
        started = await watch.next("room.typing")
        assert started == {
            "event": "room.typing",
            "room_id": GENERAL,
            "user_id": "u_typer",
            "typing": True,
        }
        await view.until(lambda users: ghost in users)

        await typer.send({"event": "room.message.send", "room_id": GENERAL, "body": "done"})
        stopped = await watch.next("room.typing")
        assert stopped["user_id"] == "u_typer" and stopped["typing"] is False
        await view.until(lambda users: ghost not in users)
        await alice.wait_for_message(general, lambda e: e["sender"] == ghost)
        await watch.roundtrip()
        assert [f["typing"] for f in _typing(watch)] == [True, False]


async def test_typing_frame_needs_the_room(bridged: PortGateway) -> None:
    async with client(bridged, "u_lost") as c:
        await c.send({"event": "room.typing", "room_id": "room_city_welcome", "typing": True})
        error = await c.next("error")
        assert error["code"] == "not_in_room"
        await c.send({"event": "room.typing", "room_id": GENERAL, "typing": "yes"})
        assert (await c.next("error"))["code"] == "invalid_frame"


async def test_element_typing_reaches_city_sockets_on_both_processes(
    clean: None, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    """Element's typing arrives as an ephemeral m.typing on the process Synapse pushes
    to (a); a socket on each process gets `room.typing` with `matrix_user_id`, true
    then false, once each."""
    settings = bridge_env.settings()
    a = process_on_port(settings, bridge_env.gateway_port)
    b = process_on_port(settings, free_port())
    await asyncio.gather(a.start(), b.start())
    try:

        async def ready() -> bool:
            checks = (await a.http.get("/readyz")).json()["checks"]
            return bool(checks.get("synapse") == "ok")

        await wait_until(ready, timeout=30, interval=0.2)
        alice = await element()
        general = await alice.join(bridge_env.alias("general"))
        async with AsyncExitStack() as stack:
            on_a = await stack.enter_async_context(client(a, "u_see_a"))
            on_b = await stack.enter_async_context(client(b, "u_see_b"))
            resp = await alice.client.room_typing(general, typing_state=True, timeout=30_000)
            assert isinstance(resp, nio.RoomTypingResponse), resp
            for c in (on_a, on_b):
                frame = await c.next("room.typing", timeout=30)
                assert frame == {
                    "event": "room.typing",
                    "room_id": GENERAL,
                    "matrix_user_id": alice.user_id,
                    "typing": True,
                }
            resp = await alice.client.room_typing(general, typing_state=False)
            assert isinstance(resp, nio.RoomTypingResponse), resp
            for c in (on_a, on_b):
                frame = await c.next("room.typing", timeout=30)
                assert frame["matrix_user_id"] == alice.user_id and frame["typing"] is False
                await c.roundtrip()
                assert len(_typing(c)) == 2, c.frames
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_members_list_city_sockets_and_element_users_not_ghosts(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    gw = bridged
    alice = await element()
    await alice.client.set_displayname("Alice in Element")
    general = await alice.join(bridge_env.alias("general"))
    token = gw.token("u_member", "Member Name")
    async with client(gw, "u_poster") as poster:
        # The poster's ghost joins the Matrix room: it must not be listed as Matrix.
        await poster.send({"event": "room.message.send", "room_id": GENERAL, "body": "hi"})
        await alice.wait_for_message(general, lambda e: e["sender"].startswith("@city_"))
        async with connect(room_url(gw, GENERAL, None, token), compression=None) as ws:
            await Client(ws, "u_member").next("room.join")

            async def listed() -> list[dict[str, Any]] | None:
                resp = await gw.http.get(f"/city/rooms/{GENERAL}/members")
                assert resp.status_code == 200, resp.text
                members: list[dict[str, Any]] = resp.json()["members"]
                ids = {m.get("matrix_user_id") for m in members}
                return members if alice.user_id in ids else None

            members = await wait_until(listed, timeout=30, interval=0.2)
    by_city = {m["user_id"]: m for m in members if "user_id" in m}
    by_matrix = {m["matrix_user_id"]: m for m in members if "matrix_user_id" in m}
    assert by_city["u_member"] == {
        "user_id": "u_member",
        "display_name": "Member Name",
        "status": "online",
    }
    assert "u_poster" in by_city
    assert by_matrix[alice.user_id]["display_name"] == "Alice in Element"
    assert by_matrix[alice.user_id]["status"] in ("online", "unavailable", "offline")
    assert not [u for u in by_matrix if u.startswith("@city") or u.startswith("@secondme")]
    assert (await gw.http.get("/city/rooms/room_city_nope/members")).status_code == 404


async def test_element_presence_becomes_room_presence_and_ghosts_are_filtered(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    """An Element user's presence change → `room.presence {matrix_user_id, status}`
    in the bridged rooms they are in; our ghosts' own presence (pushed back by
    Synapse) produces no frame."""
    gw = bridged
    alice = await element()
    await alice.join(bridge_env.alias("general"))
    async with client(gw, "u_presence_watch") as watch:
        resp = await alice.client.set_presence("unavailable")
        assert isinstance(resp, nio.PresenceSetResponse), resp
        frame = await watch.until(
            lambda f: f["event"] == "room.presence" and f.get("matrix_user_id") == alice.user_id,
            timeout=30,
        )
        assert frame == {
            "event": "room.presence",
            "room_id": GENERAL,
            "matrix_user_id": alice.user_id,
            "status": "unavailable",
        }
        resp = await alice.client.set_presence("online")
        assert isinstance(resp, nio.PresenceSetResponse), resp
        await watch.until(
            lambda f: f.get("matrix_user_id") == alice.user_id and f["status"] == "online",
            timeout=30,
        )

        # A city user's heartbeat puts their ghost online in Matrix; Synapse pushes
        # that back to us as m.presence: it is dropped, no frame names the ghost.
        # (The ghost posts first: only a ghost sharing a room with a Matrix user —
        # Alice, in #city_general — has its presence mirrored, issue 13.)
        posted = await gw.http.post(
            f"/city/rooms/{GENERAL}/messages",
            json={"body": "ghost here"},
            headers=gw.auth("u_presence_ghost"),
        )
        assert posted.status_code == 201, posted.text
        await alice.wait_for_message(
            await alice.join(bridge_env.alias("general")),
            lambda e: e["content"].get("body") == "ghost here",
        )
        ours_before = _counted("m.presence", "ours")
        beat = await gw.http.post(
            BEAT, json={"user_id": "u_presence_ghost"}, headers=gw.auth("u_presence_ghost")
        )
        assert beat.status_code == 200, beat.text
        await wait_until(lambda: _counted("m.presence", "ours") > ours_before, timeout=30)
        await watch.roundtrip()
        named = [f.get("matrix_user_id") for f in watch.frames if f["event"] == "room.presence"]
        assert set(named) == {alice.user_id}, named


async def test_ephemeral_under_either_name_and_ghosts_ignored(
    bridged: PortGateway, bridge_env: BridgeEnv
) -> None:
    """Synapse's unstable (`de.sorunome.msc2409.ephemeral`) and stable (`ephemeral`)
    names both work; a ghost in the typing list (the city's own typing, echoed) makes
    no frame; a re-sent transaction makes none either (the diff is against Redis)."""
    gw = bridged
    room = (await gw.http.get(f"/city/rooms/{GENERAL}")).json()["room"]["matrix_room_id"]
    bob = bridge_env.user_id("bob_typing")
    ghost = bridge_env.user_id("city_u_someone")
    headers = {"Authorization": f"Bearer {bridge_env.hs.hs_token}"}

    async def push(txn: str, name: str, user_ids: list[str]) -> None:
        body = {
            "events": [],
            name: [{"type": "m.typing", "room_id": room, "content": {"user_ids": user_ids}}],
        }
        resp = await gw.http.put(f"/_matrix/app/v1/transactions/{txn}", json=body, headers=headers)
        assert resp.status_code == 200, resp.text

    async with client(gw, "u_eph_watch") as watch:
        await push("t1", "de.sorunome.msc2409.ephemeral", [ghost, bob])
        assert await watch.next("room.typing") == {
            "event": "room.typing",
            "room_id": GENERAL,
            "matrix_user_id": bob,
            "typing": True,
        }
        await push("t1", "de.sorunome.msc2409.ephemeral", [ghost, bob])  # re-sent
        await push("t2", "ephemeral", [ghost])
        stopped = await watch.next("room.typing")
        assert stopped["matrix_user_id"] == bob and stopped["typing"] is False
        await push("t3", "ephemeral", [])  # the ghost stops: nothing to tell
        await watch.roundtrip()
        assert len(_typing(watch)) == 2, watch.frames
