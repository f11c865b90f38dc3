"""A browser's heartbeats, through the gateway and the bridge, as Element sees them.

The other presence tests stop at one side: the city API (tests/http/test_presence_api.py,
tests/realtime/test_presence_*.py) or the bridge's mirror driven directly
(test_presence_mirror.py). This one drives the real endpoint with the user's JWT —
and the sendBeacon form on page close — and reads the ghost's presence back with
matrix-nio.
"""

from __future__ import annotations

import orjson

from tests.bridge.conftest import BridgeEnv, MakeElement, StartBridged
from tests.bridge.test_presence_mirror import PRESENCE_WAIT, _wait_presence

BEAT = "/internal/matrix/presence/online"


async def test_heartbeats_and_beacon_reach_element(
    start_bridged: StartBridged, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    gw = await start_bridged(presence_offline_grace_seconds=1, presence_ttl_seconds=30)
    user = "u_e2e_presence"
    headers = gw.auth(user, "Presence Person")

    # The ghost exists and shares #city_general with Alice once it has spoken there.
    posted = await gw.http.post(
        "/city/rooms/room_city_general/messages", json={"body": "hi"}, headers=headers
    )
    assert posted.status_code == 201
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    await alice.wait_for_message(room_id, lambda e: e["content"].get("body") == "hi")
    ghost = bridge_env.user_id(f"city_{user}")

    beat = await gw.http.post(BEAT, json={"user_id": user, "device_id": "tab1"}, headers=headers)
    assert beat.status_code == 200, beat.text
    assert beat.json()["matrix_user_id"] == ghost
    await _wait_presence(alice, ghost, "online", PRESENCE_WAIT)

    away = {"user_id": user, "device_id": "tab1", "status": "away"}
    assert (await gw.http.post(BEAT, json=away, headers=headers)).status_code == 200
    await _wait_presence(alice, ghost, "unavailable", PRESENCE_WAIT)

    # Page close: navigator.sendBeacon posts text/plain with the token in the body.
    beacon = orjson.dumps(
        {"user_id": user, "device_id": "tab1", "status": "offline", "access_token": gw.token(user)}
    )
    r = await gw.http.post(BEAT, content=beacon, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    await _wait_presence(alice, ghost, "offline", PRESENCE_WAIT)
