"""Issue 9 item 13 (bridge side): after Redis loses its data, Matrix converges.

A user's "went offline" transition comes from Redis (a device expiring). When Redis
restarts empty together with the gateways (a `docker compose restart` without Redis
persistence), no process remembers who was online: the city says `offline`, no
transition ever comes, and the ghost used to stay `online` forever because the bridge
kept refreshing what it last sent (PostgreSQL remembers that). Now each refresh round
compares with the city's state and corrects a difference that lasts longer than
`PRESENCE_TTL_SECONDS` — long enough for a user who is still there to heartbeat
again, so live users do not flicker offline.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.bridge.conftest import BridgeEnv, MakeElement, StartBridged
from tests.bridge.test_presence_mirror import _presence, _wait_presence
from tests.realtime.test_presence_ws import PrivateRedis, private_redis

__all__ = ["private_redis"]  # the fixture, re-used

BEAT = "/internal/matrix/presence/online"
TTL = 6.0
REFRESH = 1.0


async def test_ghost_left_online_by_a_redis_loss_goes_offline(
    start_bridged: StartBridged,
    bridge_env: BridgeEnv,
    element: MakeElement,
    private_redis: PrivateRedis,
) -> None:
    settings = {
        "redis_url": private_redis.url,
        "presence_ttl_seconds": TTL,
        "matrix_presence_refresh_seconds": REFRESH,
    }
    gw = await start_bridged(**settings)
    gone, stays = "u_lost_in_redis", "u_still_here"
    ghosts = {u: bridge_env.user_id(f"city_{u}") for u in (gone, stays)}
    for user in (gone, stays):
        r = await gw.http.post(
            "/city/rooms/room_city_general/messages",
            json={"body": f"hello from {user}"},
            headers=gw.auth(user),
        )
        assert r.status_code == 201, r.text
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    for body in (f"hello from {gone}", f"hello from {stays}"):
        await alice.wait_for_message(room_id, lambda e, body=body: e["content"].get("body") == body)

    current = [gw]

    async def beat(user: str) -> int:
        body = {"user_id": user, "device_id": "tab"}
        gateway = current[0]
        return (await gateway.http.post(BEAT, json=body, headers=gateway.auth(user))).status_code

    # `stays` keeps its page open all along: a heartbeat well inside the TTL.
    async def keep_beating() -> None:
        while True:
            with contextlib.suppress(Exception):
                await beat(stays)
            await asyncio.sleep(TTL / 4)

    beating = asyncio.create_task(keep_beating())
    try:
        assert await beat(gone) == 200
        for ghost in ghosts.values():
            await _wait_presence(alice, ghost, "online", 30)

        # A fresh heartbeat, then the gateway and Redis restart (Redis empty) well
        # before the TTL runs out: the device expiry that would have announced
        # "offline" is gone with the data, and the new process remembers nobody.
        assert await beat(gone) == 200
        await gw.stop()
        private_redis.kill()
        await private_redis.start()
        gw = await start_bridged(**settings)
        current[0] = gw
        r = await gw.http.get("/city/presence", params={"user_id": gone})
        assert r.status_code == 200 and r.json()["users"][0]["status"] == "offline", r.text

        # `gone` never heartbeats again: Element must follow the city.
        await _wait_presence(alice, ghosts[gone], "offline", TTL + 10 * REFRESH + 20)
        # `stays` heartbeated inside the grace: it was never corrected to offline.
        assert (await _presence(alice, ghosts[stays])).presence == "online"
        assert gw.bridge.presence.reconciled == 1
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
