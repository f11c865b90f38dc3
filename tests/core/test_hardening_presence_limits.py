"""Issue 9 item 1: presence limits at their shipped defaults (SPEC §12).

- live presence devices per user, HTTP heartbeats and presence sockets together:
  `LIMIT_PRESENCE_DEVICES` (16); a new device over it is refused with 429
  `too_many_devices` (+ Retry-After) or an error frame, and the user's existing
  devices are unaffected;
- heartbeats per device: `LIMIT_HEARTBEATS_PER_SECOND` (1/s), burst
  `LIMIT_HEARTBEATS_BURST` (5); over it 429 `rate_limited` (+ Retry-After); an
  explicit offline is never refused.

On the old code none of these were limited over HTTP (a fresh `device_id` per call
added a device without bound), so every refusal asserted here fails there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import SECURITY_DEFAULTS, GatewayFactory
from tests.realtime.test_presence_ws import BEAT_URL, FAST, SERVICE, presence_client
from tests.servers import InProcessGateway, wait_until

CAP = SECURITY_DEFAULTS["limit_presence_devices"]
BURST = SECURITY_DEFAULTS["limit_heartbeats_burst"]


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> InProcessGateway:
    return await gateway_factory(**{**FAST, **SECURITY_DEFAULTS})


async def beat(gw: InProcessGateway, user_id: str, **fields: Any) -> httpx.Response:
    return await gw.http.post(BEAT_URL, json={"user_id": user_id, **fields}, headers=SERVICE)


async def status_of(gw: InProcessGateway, user_id: str) -> str:
    r = await gw.http.get("/city/presence", params={"user_id": user_id})
    return str(r.json()["users"][0]["status"])


def assert_refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == code
    assert int(r.headers["Retry-After"]) >= 1


async def test_device_cap_over_http(gateway_factory: GatewayFactory) -> None:
    # TTL long enough that no device expires during the test by itself.
    gw = await gateway_factory(**{**FAST, **SECURITY_DEFAULTS, "presence_ttl_seconds": 30})
    for i in range(CAP):
        r = await beat(gw, "u_many", device_id=f"tab-{i}", status="away")
        assert r.status_code == 200, (i, r.text)
    r = await beat(gw, "u_many", device_id="tab-new")  # would make the user online
    assert_refused(r, "too_many_devices")
    # Nothing changed for the user: still away, and each existing device still beats.
    assert await status_of(gw, "u_many") == "away"
    r = await beat(gw, "u_many", device_id="tab-0")
    assert (r.status_code, r.json()["status"]) == (200, "online")
    # Other users are not affected by one user's cap.
    assert (await beat(gw, "u_other", device_id="tab-new")).status_code == 200
    # A device that leaves frees its slot at once.
    assert (await beat(gw, "u_many", device_id="tab-1", status="offline")).status_code == 200
    assert (await beat(gw, "u_many", device_id="tab-new")).status_code == 200
    assert_refused(await beat(gw, "u_many", device_id="tab-newer"), "too_many_devices")


async def test_expired_devices_free_their_slots(gw: InProcessGateway) -> None:
    for i in range(CAP):
        assert (await beat(gw, "u_exp", device_id=f"old-{i}")).status_code == 200
    assert_refused(await beat(gw, "u_exp", device_id="fresh"), "too_many_devices")

    async def accepted() -> bool:  # once the old devices' TTL (1.5 s) has run out
        return (await beat(gw, "u_exp", device_id="fresh")).status_code == 200

    await wait_until(accepted, timeout=1.5 + 5, interval=0.2)


async def test_device_cap_counts_sockets_and_http_together(gw: InProcessGateway) -> None:
    async with presence_client(gw, "u_mix") as tab:
        await tab.beat()  # the socket's own device: 1
        await tab.beat(device_id="ws-extra")  # 2
        await tab.roundtrip()
        assert tab.errors() == []
        for i in range(CAP - 2):
            r = await beat(gw, "u_mix", device_id=f"http-{i}")
            assert r.status_code == 200, (i, r.text)
        assert_refused(await beat(gw, "u_mix", device_id="http-over"), "too_many_devices")
        await tab.beat(device_id="ws-over")
        await tab.wait(lambda: tab.errors() == ["too_many_devices"])
        # The socket stays usable, and its existing devices are unaffected.
        await tab.beat(device_id="ws-extra")
        await tab.roundtrip()
        assert tab.errors() == ["too_many_devices"]
        assert tab.updates("u_mix") == [("u_mix", "online")]


async def test_heartbeat_rate_per_device(gateway_factory: GatewayFactory) -> None:
    # A rate so slow that no token comes back during the test: exact counts.
    limits = {**SECURITY_DEFAULTS, "limit_heartbeats_per_second": 0.001}
    gw = await gateway_factory(**{**FAST, **limits, "presence_ttl_seconds": 30})
    codes = [(await beat(gw, "u_fast", device_id="tab")).status_code for _ in range(BURST + 3)]
    assert codes == [200] * BURST + [429] * 3
    r = await beat(gw, "u_fast", device_id="tab")
    assert_refused(r, "rate_limited")
    assert int(r.headers["Retry-After"]) > 100  # one token per 1000 s
    # Per device: another device of the same user, and other users, are unaffected.
    assert (await beat(gw, "u_fast", device_id="phone")).status_code == 200
    assert (await beat(gw, "u_slow", device_id="tab")).status_code == 200
    # An explicit offline is never refused, and takes effect.
    r = await beat(gw, "u_fast", device_id="phone", status="offline")
    assert r.status_code == 200, r.text
    r = await beat(gw, "u_fast", device_id="tab", status="offline")
    assert r.status_code == 200, r.text
    await wait_until(lambda: _is(gw, "u_fast", "offline"), timeout=5)
    # Leaving and coming back does not refill the device's budget.
    assert_refused(await beat(gw, "u_fast", device_id="tab"), "rate_limited")


async def _is(gw: InProcessGateway, user_id: str, status: str) -> bool:
    return await status_of(gw, user_id) == status


async def test_heartbeat_rate_at_the_defaults(gw: InProcessGateway) -> None:
    """At 1/s with a burst of 5, a flood of one device's heartbeats is mostly refused."""
    replies = await asyncio.gather(
        *(beat(gw, "u_flood", device_id="tab") for _ in range(4 * BURST))
    )
    codes = [r.status_code for r in replies]
    assert set(codes) == {200, 429}
    assert codes.count(200) >= BURST
    for r in replies:
        if r.status_code == 429:
            assert_refused(r, "rate_limited")


async def test_heartbeat_rate_over_the_socket(gateway_factory: GatewayFactory) -> None:
    limits = {**SECURITY_DEFAULTS, "limit_heartbeats_per_second": 0.001}
    gw = await gateway_factory(**{**FAST, **limits, "presence_ttl_seconds": 30})
    async with presence_client(gw, "u_ws") as tab:
        for _ in range(BURST + 2):
            await tab.beat()
        await tab.roundtrip()
        assert tab.errors() == ["rate_limited", "rate_limited"]
        assert tab.updates("u_ws") == [("u_ws", "online")]
        # The offline frame still applies.
        await tab.beat(status="offline")
        await tab.wait(lambda: tab.updates("u_ws")[-1:] == [("u_ws", "offline")], timeout=5)
