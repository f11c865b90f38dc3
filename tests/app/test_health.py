"""Liveness, readiness, docs, and start-up against real services."""

from __future__ import annotations

import asyncio

from tests.conftest import GatewayFactory
from tests.servers import InProcessGateway, free_port, wait_until


async def test_health_ready_docs(gateway: InProcessGateway) -> None:
    assert (await gateway.http.get("/healthz")).json() == {"status": "ok"}

    async def ready_now() -> object:
        response = await gateway.http.get("/readyz")
        return response if response.status_code == 200 else None

    # Background parts (subscriptions, Synapse) may take a moment after start.
    ready = await wait_until(ready_now, timeout=15)
    assert ready.json()["checks"]["postgres"] == "ok"
    assert ready.json()["checks"]["redis"] == "ok"
    docs = await gateway.http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await gateway.http.get("/openapi.json")).json()
    assert "/city/rooms/{room_id}/messages" in spec["paths"]
    metrics = await gateway.http.get("/metrics")
    assert metrics.status_code == 200


async def test_not_ready_when_redis_is_unreachable(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] != "ok"
    # The rooms API does not need Redis to answer.
    assert (await gw.http.get("/city/rooms/room_city_general")).status_code == 200


async def test_concurrent_starts_create_default_rooms_once(
    gateway_factory: GatewayFactory,
) -> None:
    gateways = await asyncio.gather(
        *(gateway_factory(city_default_rooms="general,welcome,builders,lobby") for _ in range(3))
    )
    rooms = (await gateways[0].http.get("/city/rooms")).json()
    assert sorted(r["slug"] for r in rooms) == ["builders", "general", "lobby", "welcome"]
    assert {r["name"] for r in rooms} == {"General", "Welcome", "Builders", "Lobby"}
