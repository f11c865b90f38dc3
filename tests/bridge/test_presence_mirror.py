"""City presence transitions drive the ghosts' Matrix presence, and keep it there."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nio
import pytest

from tests.bridge.conftest import FAST, BridgeEnv, Element, MakeElement, PortGateway
from tests.conftest import make_settings
from tests.servers import wait_until
from tests.synapse_harness import SynapseHarness, free_port, matrix_overrides, start_synapse

# SPEC: Element sees each change within 5 s. Wall-clock bounds are measured, not
# asserted (speed belongs to bench/; a loaded 2-core CI run stretches Synapse): the
# tests prove each state arrives, in order, and wait generously for it.
PRESENCE_WAIT = 30.0


async def _presence(client: Element, user_id: str) -> nio.PresenceGetResponse:
    resp = await client.client.get_presence(user_id)
    assert isinstance(resp, nio.PresenceGetResponse), resp
    return resp


async def _wait_presence(client: Element, user_id: str, state: str, timeout: float) -> float:
    """Seconds until Element sees `state` for `user_id`."""
    started = time.monotonic()
    last: list[str] = []

    async def seen() -> bool:
        last[:] = [(await _presence(client, user_id)).presence]
        return last[0] == state

    try:
        await wait_until(seen, timeout=timeout, interval=0.05)
    except AssertionError:
        raise AssertionError(f"{user_id} still {last} after {timeout}s, wanted {state}") from None
    return time.monotonic() - started


async def test_transitions_reach_element_within_seconds(
    bridged: PortGateway, bridge_env: BridgeEnv, element: MakeElement
) -> None:
    alice = await element()
    room_id = await alice.join(bridge_env.alias("general"))
    ghost = bridge_env.user_id("city_u_pres1")
    # Presence is visible to users who share a room.
    await bridged.bridge.join(room_id, ghost)
    hooks = bridged.runtime.hooks

    await hooks.emit_presence("u_pres1", "offline", "online", 0)
    await _wait_presence(alice, ghost, "online", PRESENCE_WAIT)
    await hooks.emit_presence("u_pres1", "online", "away", 300_000)
    await _wait_presence(alice, ghost, "unavailable", PRESENCE_WAIT)
    await hooks.emit_presence("u_pres1", "away", "offline", 0)
    await _wait_presence(alice, ghost, "offline", PRESENCE_WAIT)


async def test_online_ghosts_are_refreshed_and_offline_ones_are_not(
    start_bridged: object, bridge_env: BridgeEnv, db: asyncpg.Connection, element: MakeElement
) -> None:
    gw = await start_bridged(matrix_presence_refresh_seconds=0.5)  # type: ignore[operator]
    hooks = gw.runtime.hooks
    ghost = bridge_env.user_id("city_u_pres2")
    # Sharing a room with the bot lets the bot read the ghost's presence; a real
    # Matrix user in it makes the ghost visible, so its presence is mirrored at all.
    general = (await gw.http.get("/city/rooms/room_city_general")).json()["room"]
    alice = await element()
    await alice.join(general["matrix_room_id"])
    await gw.bridge.join(general["matrix_room_id"], ghost)
    await hooks.emit_presence("u_pres2", "offline", "online", 0)
    mirror = gw.bridge.presence
    await wait_until(lambda: mirror.sent >= 1, timeout=5)
    # Re-sent every refresh interval while online, so Synapse's last_active stays fresh.
    before = mirror.sent
    await wait_until(lambda: mirror.sent >= before + 3, timeout=5)
    async with httpx.AsyncClient(base_url=bridge_env.hs.base_url) as http:
        seen = await http.get(
            f"/_matrix/client/v3/presence/{ghost}/status", headers=bridge_env.hs.as_headers
        )
    assert seen.json().get("presence") == "online", seen.text
    assert seen.json()["last_active_ago"] < 2_000

    await hooks.emit_presence("u_pres2", "online", "offline", 0)
    await wait_until(
        lambda: db.fetchval(
            "select presence_sent and presence_due_at is null from matrix_ghosts"
            " where matrix_user_id = $1",
            ghost,
        ),
        timeout=5,
    )
    after = mirror.sent
    # Nothing left to refresh: the sweep claims no offline ghost.
    assert await mirror.sweep() == 0
    assert mirror.sent == after


# --- against Synapse's own timeout ---------------------------------------------------
@pytest.fixture
async def short_timeout_synapse(
    tmp_path_factory: pytest.TempPathFactory, clean: None
) -> AsyncIterator[tuple[SynapseHarness, PortGateway]]:
    """A Synapse that drops non-syncing users after 2 s, and a gateway bridged to it."""
    port = free_port()
    overrides = matrix_overrides(port)
    hs = await start_synapse(
        make_settings(**overrides),
        data_dir=tmp_path_factory.mktemp("synapse-presence"),
        presence_sync_online_timeout_ms=2_000,
    )
    settings = make_settings(
        **overrides,
        **FAST,
        matrix_homeserver_url=hs.base_url,
        matrix_presence_refresh_seconds=1.0,
        # The test drives transitions through the hook for a user Redis never saw: the
        # bridge would reconcile the ghost to the city's `offline` after one TTL.
        presence_ttl_seconds=600,
    )
    gw = await PortGateway(settings, port).start()
    try:
        await gw.started_bridge()
        yield hs, gw
    finally:
        await gw.stop()
        await hs.stop()


async def test_refresh_outlives_synapse_sync_online_timeout(
    short_timeout_synapse: tuple[SynapseHarness, PortGateway],
) -> None:
    hs, gw = short_timeout_synapse
    user = await hs.make_user()
    alice = Element(hs, user)
    try:
        room_id = await alice.join(f"#city_general:{hs.server_name}")
        bridged_ghost = hs.user_id("city_u_kept")
        plain_ghost = hs.user_id("city_u_plain")
        for ghost in (bridged_ghost, plain_ghost):
            await gw.bridge.join(room_id, ghost)
        # One ghost through the bridge (refreshed), one set once behind its back.
        await gw.runtime.hooks.emit_presence("u_kept", "offline", "online", 0)
        async with httpx.AsyncClient(base_url=hs.base_url) as http:
            resp = await http.put(
                f"/_matrix/client/v3/presence/{plain_ghost}/status",
                params={"user_id": plain_ghost},
                headers=hs.as_headers,
                json={"presence": "online"},
            )
            assert resp.status_code == 200
        await _wait_presence(alice, bridged_ghost, "online", 5)
        # Synapse times the plain ghost out (its timeout check starts 30 s after boot
        # and runs every 5 s)...
        await _wait_presence(alice, plain_ghost, "offline", 60)
        # ...while the refreshed one is still online, and stays so for two more rounds.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert (await _presence(alice, bridged_ghost)).presence == "online"
            await wait_until(lambda: True)  # yield to the gateway between checks
    finally:
        await alice.close()
