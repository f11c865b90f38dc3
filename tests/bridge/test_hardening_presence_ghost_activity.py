"""Issue 9 item 14: the bridge acting as a ghost must not leave Matrix saying "online".

Synapse treats an `m.room.message` sent as a user as activity: its
`bump_presence_active_time` turns an `unavailable` user back to `online`
(`currently_active: true`). The outbox delivers city messages as the ghost, so an
away city user who had just posted showed `online` in Element until the next
refresh. The test: post, heartbeat online then away, post again (the bridge acts as
the ghost), and Element must end on — and stay on — `unavailable`.
"""

from __future__ import annotations

import time

from tests.bridge.conftest import BridgeEnv, MakeElement, StartBridged
from tests.bridge.test_presence_mirror import PRESENCE_WAIT, _presence, _wait_presence

BEAT = "/internal/matrix/presence/online"
DEBOUNCE = 2.0
# Long enough for a late bump or a late re-assertion to show, well inside the refresh.
HOLD_SECONDS = DEBOUNCE + 2.0


async def test_away_ghost_stays_unavailable_after_the_bridge_posts_as_it(
    start_bridged: StartBridged, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    # The refresh (which re-sends the state) is far away: only the fix can restore it.
    gw = await start_bridged(
        matrix_presence_debounce_seconds=DEBOUNCE, matrix_presence_refresh_seconds=600
    )
    user = "u_away_poster"
    headers = gw.auth(user, "Away Poster")
    ghost = bridge_env.user_id(f"city_{user}")

    async def post(body: str) -> None:
        r = await gw.http.post(
            "/city/rooms/room_city_general/messages", json={"body": body}, headers=headers
        )
        assert r.status_code == 201, r.text

    await post("before")
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    await alice.wait_for_message(room_id, lambda e: e["content"].get("body") == "before")

    for status, matrix_state in (("online", "online"), ("away", "unavailable")):
        beat = {"user_id": user, "device_id": "tab", "status": status}
        assert (await gw.http.post(BEAT, json=beat, headers=headers)).status_code == 200
        await _wait_presence(alice, ghost, matrix_state, PRESENCE_WAIT)

    # The bridge sends this one as the ghost: Synapse counts it as the ghost's activity.
    await post("while away")
    await alice.wait_for_message(room_id, lambda e: e["content"].get("body") == "while away")

    await _wait_presence(alice, ghost, "unavailable", PRESENCE_WAIT)
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        seen = await _presence(alice, ghost)
        assert (seen.presence, seen.currently_active) != ("online", True), seen
        assert seen.presence == "unavailable", seen
        await alice.sync(timeout_ms=250)  # paces the checks on Synapse, not a sleep
