"""Issue 9 item 8: `#city_{slug}:S` is joinable at any moment after the 201.

Synapse binds a createRoom's `room_alias_name` before it sends the room's join
rules; joins through the alias in those milliseconds were refused (403).
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import nio

from tests.bridge.conftest import BridgeEnv, Element, MakeElement, PortGateway

# Seconds after the 201 at which Element users try to join (the window was 25–100 ms).
OFFSETS = (0.0, 0.005, 0.01, 0.025, 0.04, 0.05, 0.075, 0.1, 0.125, 0.15)


async def _join_at(el: Element, alias: str, offset: float) -> nio.JoinResponse | nio.JoinError:
    # The offset is the stimulus (when to try), not a wait for a result.
    await asyncio.sleep(offset)
    resp = await el.client.join(alias)
    assert isinstance(resp, nio.JoinResponse | nio.JoinError), resp
    return resp


async def test_joining_right_after_the_201_always_works(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    users = [await element() for _ in OFFSETS]
    for _ in range(3):
        slug = f"j{secrets.token_hex(4)}"
        resp = await bridged.http.post(
            "/city/rooms", json={"name": "Join me", "slug": slug}, headers=bridged.auth("u_j")
        )
        assert resp.status_code == 201, resp.text
        alias = bridge_env.alias(slug)
        joins = await asyncio.gather(
            *(_join_at(el, alias, offset) for el, offset in zip(users, OFFSETS, strict=True))
        )
        failed = [
            (offset, r.status_code, r.message)
            for offset, r in zip(OFFSETS, joins, strict=True)
            if isinstance(r, nio.JoinError)
        ]
        assert failed == [], failed
        room_ids = {r.room_id for r in joins if isinstance(r, nio.JoinResponse)}
        assert len(room_ids) == 1
        (room_id,) = room_ids
        # The city knows the same room, and Matrix shows the alias on it.
        room = (await bridged.http.get(f"/city/rooms/room_city_{slug}")).json()["room"]
        assert room["matrix_room_id"] == room_id
        state = httpx.get(
            f"{bridge_env.hs.base_url}/_matrix/client/v3/rooms/{room_id}/state",
            headers={"Authorization": f"Bearer {users[0].client.access_token}"},
        ).json()
        by_type = {e["type"]: e["content"] for e in state if e.get("state_key") == ""}
        assert by_type["m.room.canonical_alias"]["alias"] == alias
        assert by_type["m.room.join_rules"]["join_rule"] == "public"
        assert by_type["m.room.name"]["name"] == "Join me"
