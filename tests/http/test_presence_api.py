"""Presence over REST: the heartbeat endpoint, status reads, stats, and the hooks.

A real in-process gateway (uvicorn) against the shared PostgreSQL and Redis, with
short TTLs and grace so that expiries happen in a second or two; every wait is on
a condition.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bridge.naming import matrix_identity
from tests.conftest import INTERNAL_TOKEN, REDIS_PREFIX, GatewayFactory, make_settings
from tests.servers import InProcessGateway, wait_until

URL = "/internal/matrix/presence/online"
FAST = {
    "presence_ttl_seconds": 1.5,
    "presence_offline_grace_seconds": 0.5,
    "presence_sweep_interval_seconds": 0.05,
}
SERVICE = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}

Transition = tuple[str, str, str]


def record_transitions(gw: InProcessGateway) -> list[Transition]:
    """Every (user, previous, status) this gateway hands to `hooks.presence_changed`."""
    seen: list[Transition] = []

    async def listener(user_id: str, previous: str, status: str, ago: int) -> None:
        assert isinstance(ago, int) and ago >= 0
        seen.append((user_id, previous, status))

    gw.runtime.hooks.presence_changed.append(listener)
    return seen


async def beat(gw: InProcessGateway, body: dict[str, Any], **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", SERVICE)
    return await gw.http.post(URL, json=body, headers=headers, **kw)


async def statuses(gw: InProcessGateway, *user_ids: str) -> list[str]:
    r = await gw.http.get("/city/presence", params=[("user_id", u) for u in user_ids])
    assert r.status_code == 200, r.text
    return [u["status"] for u in r.json()["users"]]


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> InProcessGateway:
    return await gateway_factory(**FAST)


# --- the heartbeat ------------------------------------------------------------------


async def test_heartbeat_sets_the_spec_key_and_answers_the_state(
    gw: InProcessGateway, redis_client: aioredis.Redis
) -> None:
    seen = record_transitions(gw)
    r = await beat(gw, {"user_id": "u_1"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "user_id": "u_1",
        "status": "online",
        "matrix_user_id": None,
        "heartbeat_seconds": gw.settings.presence_heartbeat_seconds,
    }
    key = gw.runtime.presence.engine.spec_key("u_1")  # bucket-tagged on a cluster
    assert key.startswith(REDIS_PREFIX + "presence:") and key.endswith("user:u_1")
    assert await redis_client.get(key) == "online"
    assert 0 < await redis_client.pttl(key) <= 1500
    await wait_until(lambda: seen == [("u_1", "offline", "online")])

    # A second heartbeat renews the TTL and is not a transition.
    r = await beat(gw, {"user_id": "u_1", "status": "online", "last_active_ago": 0})
    assert r.json()["status"] == "online"
    assert await statuses(gw, "u_1") == ["online"]

    # Heartbeats stopping: offline by the sweeper, once, within TTL + 5 s.
    await wait_until(lambda: len(seen) == 2, timeout=1.5 + 5)
    assert seen == [("u_1", "offline", "online"), ("u_1", "online", "offline")]
    assert await redis_client.exists(key) == 0
    assert await statuses(gw, "u_1") == ["offline"]


async def test_away_from_status_or_inactivity(gw: InProcessGateway) -> None:
    seen = record_transitions(gw)
    assert (await beat(gw, {"user_id": "u_a", "status": "away"})).json()["status"] == "away"
    r = await beat(gw, {"user_id": "u_a", "status": "online", "last_active_ago": 300_000})
    assert r.json()["status"] == "away"  # idle past PRESENCE_AWAY_AFTER_SECONDS
    r = await beat(gw, {"user_id": "u_a", "last_active_ago": 299_000})
    assert r.json()["status"] == "online"
    r = await beat(gw, {"user_id": "u_a", "status": "unavailable"})  # Matrix's word for away
    assert r.json()["status"] == "away"
    await wait_until(lambda: len(seen) == 3)
    assert seen == [
        ("u_a", "offline", "away"),
        ("u_a", "away", "online"),
        ("u_a", "online", "away"),
    ]


async def test_explicit_offline_waits_for_grace_and_a_reconnect_cancels_it(
    gw: InProcessGateway, redis_client: aioredis.Redis
) -> None:
    seen = record_transitions(gw)
    await beat(gw, {"user_id": "u_g", "device_id": "tab"})
    # During the grace the user is still what they were.
    r = await beat(gw, {"user_id": "u_g", "device_id": "tab", "status": "offline"})
    assert r.json()["status"] == "online"
    await wait_until(lambda: len(seen) == 2, timeout=5)
    assert seen[-1] == ("u_g", "online", "offline")

    await beat(gw, {"user_id": "u_g", "device_id": "tab"})
    started = await server_ms(redis_client)
    await beat(gw, {"user_id": "u_g", "device_id": "tab", "status": "offline"})
    r = await beat(gw, {"user_id": "u_g", "device_id": "other-tab"})  # back inside the grace
    assert r.json()["status"] == "online"

    async def well_past_grace() -> bool:
        await beat(gw, {"user_id": "u_g", "device_id": "other-tab"})
        return await server_ms(redis_client) > started + 500 + 500

    await wait_until(well_past_grace, timeout=5)
    assert await statuses(gw, "u_g") == ["online"]
    assert seen == [
        ("u_g", "offline", "online"),
        ("u_g", "online", "offline"),
        ("u_g", "offline", "online"),
    ]


async def test_multi_tab(gw: InProcessGateway) -> None:
    seen = record_transitions(gw)
    await beat(gw, {"user_id": "u_m", "device_id": "a"})
    await beat(gw, {"user_id": "u_m", "device_id": "b", "status": "away"})
    r = await beat(gw, {"user_id": "u_m", "device_id": "a", "status": "offline"})
    assert r.json()["status"] == "away"  # the remaining tab is away
    r = await beat(gw, {"user_id": "u_m", "device_id": "b"})
    assert r.json()["status"] == "online"
    r = await beat(gw, {"user_id": "u_m", "device_id": "b", "status": "offline"})
    assert r.json()["status"] == "online"  # grace
    await wait_until(lambda: len(seen) == 4, timeout=5)
    assert [s for _, _, s in seen] == ["online", "away", "online", "offline"]


async def test_text_plain_beacon_with_access_token(gw: InProcessGateway) -> None:
    """navigator.sendBeacon: text/plain, no headers, the user's JWT in the body."""
    token = gw.token("u_b")
    body = b'{"user_id":"u_b","device_id":"t1","access_token":"%s"}' % token.encode()
    r = await gw.http.post(URL, content=body, headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "online"
    body = b'{"user_id":"u_b","device_id":"t1","status":"offline","access_token":"%s"}' % (
        token.encode()
    )
    r = await gw.http.post(URL, content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text

    async def offline() -> bool:
        return await statuses(gw, "u_b") == ["offline"]

    await wait_until(offline, timeout=5)


async def test_auth(gw: InProcessGateway) -> None:
    own = gw.auth("u_me")
    assert (await beat(gw, {"user_id": "u_me"}, headers=own)).status_code == 200
    # A user heartbeating as someone else: 403, and nothing recorded for the victim.
    r = await beat(gw, {"user_id": "u_victim"}, headers=own)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await beat(gw, {"user_id": "u_victim", "access_token": gw.token("u_me")}, headers={})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert await statuses(gw, "u_victim") == ["offline"]
    for headers, body in [
        ({}, {"user_id": "u_me"}),
        ({"Authorization": "Bearer nope"}, {"user_id": "u_me"}),
        ({"Authorization": "Bearer " + INTERNAL_TOKEN[:-1]}, {"user_id": "u_me"}),
        ({}, {"user_id": "u_me", "access_token": "nope"}),
        ({}, {"user_id": "u_me", "access_token": ""}),
    ]:
        r = await beat(gw, body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized"), (headers, body)
    # The header wins over the body's token.
    r = await beat(gw, {"user_id": "u_x", "access_token": gw.token("u_x")}, headers=own)
    assert r.status_code == 403
    # The internal token may speak for anyone, in the header or the body.
    r = await beat(gw, {"user_id": "u_x", "access_token": INTERNAL_TOKEN}, headers={})
    assert r.status_code == 200


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({}, "invalid_user_id"),
    ({"user_id": 5}, "invalid_user_id"),
    ({"user_id": "bob"}, "invalid_user_id"),
    ({"user_id": "u_" + "x" * 129}, "invalid_user_id"),
    ({"user_id": "u_a\x00"}, "invalid_user_id"),
    ({"user_id": "u_1", "status": "busy"}, "invalid_status"),
    ({"user_id": "u_1", "status": 1}, "invalid_status"),
    ({"user_id": "u_1", "status": ["online"]}, "invalid_status"),
    ({"user_id": "u_1", "last_active_ago": -1}, "invalid_last_active_ago"),
    ({"user_id": "u_1", "last_active_ago": True}, "invalid_last_active_ago"),
    ({"user_id": "u_1", "last_active_ago": 1.5}, "invalid_last_active_ago"),
    ({"user_id": "u_1", "last_active_ago": "5"}, "invalid_last_active_ago"),
    ({"user_id": "u_1", "device_id": ""}, "invalid_device_id"),
    ({"user_id": "u_1", "device_id": 3}, "invalid_device_id"),
    ({"user_id": "u_1", "device_id": "d" * 129}, "invalid_device_id"),
]


async def test_bad_bodies(gw: InProcessGateway) -> None:
    for body, code in BAD_BODIES:
        r = await beat(gw, body)
        assert (r.status_code, r.json()["code"]) == (422, code), (body, r.text)
        assert r.json()["message"]
    assert (await gw.http.get("/city/stats")).json()["users_online"] == 0


async def test_bad_encodings(gw: InProcessGateway) -> None:
    for raw in (b"", b"{not json", b"[1]", b'"u_1"', b"\xff\xfe", b"null"):
        r = await gw.http.post(URL, content=raw, headers={**SERVICE, "content-type": "text/plain"})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_json"), raw
    r = await gw.http.post(
        URL,
        content=b"user_id=u_1",
        headers={**SERVICE, "content-type": "application/x-www-form-urlencoded"},
    )
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")
    r = await beat(gw, {"user_id": "u_1", "access_token": 5}, headers={})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_access_token")
    # Huge idle times are just "away"; unknown fields are ignored.
    r = await beat(gw, {"user_id": "u_1", "last_active_ago": 10**15, "extra": {"a": 1}})
    assert (r.status_code, r.json()["status"]) == (200, "away"), r.text


async def test_fast_path_and_framework_route_answer_alike(gw: InProcessGateway) -> None:
    """A chunked body takes the normal stack (the documented route): same answers."""

    async def chunked(data: bytes) -> Any:
        yield data[:10]
        yield data[10:]

    for body, expected in [
        (b'{"user_id":"u_same","status":"away"}', (200, "away")),
        (b'{"user_id":"u_same","status":"busy"}', (422, "invalid_status")),
    ]:
        fast = await gw.http.post(URL, content=body, headers=SERVICE)
        slow = await gw.http.post(URL, content=chunked(body), headers=SERVICE)
        assert "content-length" not in slow.request.headers
        for r in (fast, slow):
            got = (r.status_code, r.json().get("status") or r.json().get("code"))
            assert got == expected, r.text
            assert r.headers["content-type"] == "application/json"
            assert r.headers["x-request-id"]
        assert fast.json() == slow.json()
    r = await gw.http.post(URL, json={"user_id": "u_same"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = await gw.http.post(URL, content=b"x" * 300_000, headers=SERVICE)
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")
    r = await gw.http.get(URL)
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


def test_matrix_user_id_uses_the_bridge_naming() -> None:
    settings = make_settings(
        matrix_homeserver_url="http://127.0.0.1:1",
        matrix_server_name="city.test",
        matrix_as_token="a" * 32,
        matrix_hs_token="h" * 32,
    )
    name = matrix_identity(settings).matrix_user_id
    assert name("u_123") == "@city_u_123:city.test"
    assert name("u_Ab=") == "@city_u_=41b=3d:city.test"
    assert matrix_identity(make_settings()).matrix_user_id("u_123") is None


# --- reads --------------------------------------------------------------------------------


async def test_get_presence(gw: InProcessGateway) -> None:
    await beat(gw, {"user_id": "u_on"})
    await beat(gw, {"user_id": "u_idle", "status": "away", "last_active_ago": 400_000})
    r = await gw.http.get(
        "/city/presence",
        params=[("user_id", u) for u in ("u_nobody", "u_idle", "u_on", "u_nobody")],
    )
    assert r.status_code == 200
    users = r.json()["users"]
    assert [(u["user_id"], u["status"]) for u in users] == [
        ("u_nobody", "offline"),
        ("u_idle", "away"),
        ("u_on", "online"),
        ("u_nobody", "offline"),
    ]
    assert users[0]["last_active_ago"] == 0
    assert users[1]["last_active_ago"] >= 400_000
    assert (await gw.http.get("/city/presence")).json() == {"users": []}

    r = await gw.http.get("/city/presence", params={"user_id": "robert'); drop"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_user_id")
    r = await gw.http.get("/city/presence", params=[("user_id", f"u_{i}") for i in range(201)])
    assert (r.status_code, r.json()["code"]) == (422, "too_many_users")


async def test_stats(gw: InProcessGateway) -> None:
    r = await gw.http.get("/city/stats")
    assert r.json() == {"rooms": 3, "messages_24h": 0, "users_online": 0}
    for i in range(2):
        r = await gw.http.post(
            "/city/rooms/room_city_general/messages",
            json={"body": f"hello {i}"},
            headers=gw.auth("u_s1"),
        )
        assert r.status_code == 201
    await beat(gw, {"user_id": "u_s1"})
    await beat(gw, {"user_id": "u_s2", "status": "away"})
    await beat(gw, {"user_id": "u_s2", "device_id": "phone"})
    assert (await gw.http.get("/city/stats")).json() == {
        "rooms": 3,
        "messages_24h": 2,
        "users_online": 2,
    }


async def test_presence_metrics_and_readiness(gw: InProcessGateway) -> None:
    r = await gw.http.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["presence"] == "ok", r.text
    await beat(gw, {"user_id": "u_metrics"})
    await wait_until(lambda: gw.runtime.presence.announced == 1)
    text = (await gw.http.get("/metrics")).text
    assert 'city_presence_heartbeats_total{transport="http"}' in text
    # The bare ASGI route is labelled by its path like the FastAPI routes.
    assert 'route="/internal/matrix/presence/online",status="200"' in text
    # Its documented twin is in the OpenAPI schema, with both body types.
    spec = (await gw.http.get("/openapi.json")).json()
    body = spec["paths"]["/internal/matrix/presence/online"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "text/plain"}
