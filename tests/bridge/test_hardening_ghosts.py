"""Issue 9 item 6: ghost accounts only for city users the city has seen.

Synapse asks the appservice about any user id in our namespace (an invite, a profile
lookup); answering by registering the account let anyone mint accounts.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import httpx

from tests.bridge.conftest import BridgeEnv, MakeElement, PortGateway
from tests.servers import wait_until


async def _exists_on_synapse(env: BridgeEnv, user_id: str) -> bool:
    """Synapse has the account (asked as the appservice, which never queries us)."""
    async with httpx.AsyncClient(base_url=env.hs.base_url, timeout=30) as http:
        resp = await http.get(
            "/_matrix/client/v3/account/whoami",
            params={"user_id": user_id},
            headers=env.hs.as_headers,
        )
    assert resp.status_code in (200, 403), resp.text
    return resp.status_code == 200


async def _query(gw: PortGateway, env: BridgeEnv, user_id: str) -> int:
    resp = await gw.http.get(
        f"/_matrix/app/v1/users/{quote(user_id)}",
        headers={"Authorization": f"Bearer {env.hs.hs_token}"},
    )
    return resp.status_code


async def test_unknown_ghosts_are_not_registered(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    stranger = bridge_env.user_id(f"city_u_nobody{secrets.token_hex(4)}")
    assert await _query(bridged, bridge_env, stranger) == 404
    assert not await _exists_on_synapse(bridge_env, stranger)

    # Through Synapse, as an Element user would: invite and look up the profile.
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    invited = bridge_env.user_id(f"city_u_invited{secrets.token_hex(4)}")
    await alice.client.room_invite(room_id, invited)
    await alice.client.get_profile(invited)
    assert not await _exists_on_synapse(bridge_env, invited)


async def test_seen_city_users_have_ghosts(bridged: PortGateway, bridge_env: BridgeEnv) -> None:
    poster, beating = f"u_post{secrets.token_hex(3)}", f"u_beat{secrets.token_hex(3)}"
    resp = await bridged.http.post(
        "/city/rooms/room_city_general/messages",
        json={"body": "hello"},
        headers=bridged.auth(poster, "Poster"),
    )
    assert resp.status_code == 201, resp.text
    ghost = bridge_env.user_id(f"city_{poster}")
    await wait_until(lambda: _exists_on_synapse(bridge_env, ghost), timeout=30)
    assert await _query(bridged, bridge_env, ghost) == 200

    resp = await bridged.http.post(
        "/internal/matrix/presence/online",
        json={"user_id": beating, "status": "online", "device_id": "d1"},
        headers=bridged.auth(beating, "Beating"),
    )
    assert resp.status_code == 200, resp.text
    beating_ghost = bridge_env.user_id(f"city_{beating}")
    # Issue 13: a heartbeat alone no longer makes a ghost (nobody on Matrix shares a
    # room with it, so its presence is not mirrored: tests/bridge/test_presence_visibility.py).
    mirror = bridged.bridge.presence
    await wait_until(lambda: mirror.hidden >= 1, timeout=30)
    assert not await _exists_on_synapse(bridge_env, beating_ghost)
    assert await _query(bridged, bridge_env, beating_ghost) == 404
    # Our own fixed users are always there.
    assert await _query(bridged, bridge_env, bridge_env.user_id("secondme")) == 200
