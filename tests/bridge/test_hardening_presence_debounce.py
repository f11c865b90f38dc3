"""Issue 9 item 5: presence sent to Synapse is debounced per ghost, last state wins.

A user flapping between online and away through the real heartbeat endpoint used to
cost one Synapse PUT per transition (400 alternating heartbeats → 399 PUTs). Now a
ghost gets at most one PUT per `MATRIX_PRESENCE_DEBOUNCE_SECONDS` window, and the
state Element ends on is the user's last one.
"""

from __future__ import annotations

import math
import time

import asyncpg

from tests.bridge.conftest import BridgeEnv, MakeElement, StartBridged
from tests.bridge.test_presence_mirror import PRESENCE_WAIT, _presence, _wait_presence
from tests.servers import wait_until

BEAT = "/internal/matrix/presence/online"
DEBOUNCE = 2.0
FLAPS = 120


async def test_flapping_user_costs_one_put_per_window_and_the_last_state_wins(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    db: asyncpg.Connection,
) -> None:
    # No refresh inside the test: every PUT counted is one the flapping caused.
    gw = await start_bridged(
        matrix_presence_debounce_seconds=DEBOUNCE, matrix_presence_refresh_seconds=600
    )
    user = "u_flapper"
    headers = gw.auth(user, "Flapper")
    ghost = bridge_env.user_id(f"city_{user}")
    posted = await gw.http.post(
        "/city/rooms/room_city_general/messages", json={"body": "flap"}, headers=headers
    )
    assert posted.status_code == 201, posted.text
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    await alice.wait_for_message(room_id, lambda e: e["content"].get("body") == "flap")

    mirror = gw.bridge.presence
    presence = gw.runtime.presence
    sent_before, announced_before = mirror.sent, presence.announced
    started = time.monotonic()
    # online, away, online, ..., away: every heartbeat is a transition.
    for i in range(FLAPS):
        status = "online" if i % 2 == 0 else "away"
        r = await gw.http.post(
            BEAT, json={"user_id": user, "device_id": "tab", "status": status}, headers=headers
        )
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    flapping = time.monotonic() - started
    await wait_until(lambda: presence.announced - announced_before >= FLAPS, timeout=30)

    # The last state wins: Element ends on `unavailable`, and the bridge has nothing
    # left to send (the trailing send of the last window delivered it).
    await _wait_presence(alice, ghost, "unavailable", PRESENCE_WAIT)

    async def settled() -> bool:
        row = await db.fetchrow(
            "select presence, presence_sent from matrix_ghosts where matrix_user_id = $1", ghost
        )
        return row is not None and tuple(row) == ("unavailable", True)

    await wait_until(settled, timeout=PRESENCE_WAIT)
    assert (await _presence(alice, ghost)).presence == "unavailable"

    # One leading PUT, then at most one per window while flapping, plus the trailing one.
    puts = mirror.sent - sent_before
    windows = math.ceil(flapping / DEBOUNCE)
    assert 1 <= puts <= windows + 2, (puts, FLAPS, round(flapping, 2))
    assert mirror.debounced >= FLAPS - puts
    # The per-ghost state is dropped once the ghost is quiet (the map stays bounded).
    await wait_until(lambda: mirror.idle, timeout=PRESENCE_WAIT)
