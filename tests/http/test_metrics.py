"""`GET /metrics`, request ids and structured logs against a real gateway.

Metrics are process-wide (prometheus_client's default registry) and other tests in
this process move them too, so every check compares a scrape before and after.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from gateway.infra.logs import ContextFilter, JsonFormatter
from tests.conftest import GatewayFactory
from tests.fake_agents_core import FakeAgentsCore
from tests.servers import Gateway, InProcessGateway, wait_until

GENERAL = "room_city_general"
ROOM_ROUTE = "/city/rooms/{room_id}"
FAMILIES = {
    "city_http_requests",
    "city_http_request_duration_seconds",
    "city_ws_connections",
    "city_ws_connections_opened",
    "city_fanout_frames",
    "city_fanout_dropped_clients",
    "city_presence_heartbeats",
    "city_presence_transitions",
    "city_messages_posted",
    "city_matrix_send_seconds",
    "city_matrix_send_failures",
    "city_matrix_outbox_depth",
    "city_matrix_outbox_oldest_age_seconds",
    "city_matrix_inbox_pending",
    "city_matrix_inbox_lag_seconds",
    "city_agents_core_seconds",
    "city_agents_core_failures",
    "city_nats_published",
    "city_nats_dropped",
    "city_nats_publish_failures",
    "city_nats_queue_depth",
    "city_nats_connected",
}


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(gw: Gateway) -> Scrape:
    response = await gw.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def test_http_requests_are_counted_by_route_template_and_status(
    gateway: InProcessGateway,
) -> None:
    before = await scrape(gateway)
    auth = gateway.auth("u_metrics")
    assert (await gateway.http.get(f"/city/rooms/{GENERAL}", headers=auth)).status_code == 200
    assert (await gateway.http.get(f"/city/rooms/{GENERAL}", headers=auth)).status_code == 200
    assert (await gateway.http.get("/city/rooms/room_city_nope", headers=auth)).status_code == 404
    assert (await gateway.http.get("/no/such/path")).status_code == 404
    after = await scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    requests = "city_http_requests_total"
    assert delta(requests, method="GET", route=ROOM_ROUTE, status="200") == 2
    assert delta(requests, method="GET", route=ROOM_ROUTE, status="404") == 1
    # Unknown paths share one label value: a scanner cannot blow up the series count.
    assert delta(requests, method="GET", route="<unmatched>", status="404") == 1
    assert not any("room_city_nope" in str(labels) for _, labels in after.samples)
    duration = "city_http_request_duration_seconds_count"
    assert delta(duration, method="GET", route=ROOM_ROUTE) == 3
    # Every metric family of docs/operations.md is exposed, even before first use.
    assert FAMILIES <= after.families, FAMILIES - after.families


async def test_request_id_is_echoed_or_generated(gateway: InProcessGateway) -> None:
    given = await gateway.http.get("/healthz", headers={"X-Request-ID": "req-abc.123"})
    assert given.headers["x-request-id"] == "req-abc.123"

    generated = await gateway.http.get("/healthz")
    first = generated.headers["x-request-id"]
    assert len(first) == 16 and int(first, 16) >= 0
    assert (await gateway.http.get("/healthz")).headers["x-request-id"] != first

    # Something that could forge log lines or explode sizes is replaced, not echoed.
    for bad in ("a b", "x" * 200, "é"):
        response = await gateway.http.get("/healthz", headers={"X-Request-ID": bad.encode()})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 16

    # Errors (here the body size limit, answered before routing) carry it too.
    big = await gateway.http.post(
        f"/city/rooms/{GENERAL}/messages",
        content=b"x" * (gateway.settings.city_max_request_bytes + 1),
        headers={**gateway.auth("u_1"), "X-Request-ID": "too-big-1"},
    )
    assert big.status_code == 413
    assert big.headers["x-request-id"] == "too-big-1"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Capture what the production JSON handler would write."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    access = logging.getLogger("gateway.access")
    old_level = access.level
    access.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        access.setLevel(old_level)


async def test_access_log_is_one_json_line_with_request_and_user_id(
    gateway: InProcessGateway, json_log: io.StringIO
) -> None:
    response = await gateway.http.post(
        f"/city/rooms/{GENERAL}/messages",
        json={"body": "logged"},
        headers={**gateway.auth("u_logged"), "X-Request-ID": "log-me-1"},
    )
    assert response.status_code == 201
    await gateway.http.get("/metrics")  # probes and scrapes stay out of the access log

    entries = [orjson.loads(line) for line in json_log.getvalue().splitlines() if line]
    access = [e for e in entries if e["logger"] == "gateway.access"]
    assert len(access) == 1, access
    entry = access[0]
    assert entry["request_id"] == "log-me-1"
    assert entry["user_id"] == "u_logged"
    assert entry["status"] == 201
    assert entry["msg"].startswith(f"POST /city/rooms/{GENERAL}/messages 201")
    assert entry["duration_ms"] >= 0 and entry["level"] == "info" and "ts" in entry


async def test_websocket_connections_gauge_follows_open_sockets(
    gateway: InProcessGateway,
) -> None:
    route = "/ws/city/rooms/{room_id}"
    before = (await scrape(gateway)).value("city_ws_connections", route=route)
    opened = (await scrape(gateway)).value("city_ws_connections_opened_total", route=route)
    url = f"{gateway.ws_url}/ws/city/rooms/{GENERAL}?token={gateway.token('u_ws')}"
    async with connect(url) as ws:
        await ws.send(orjson.dumps({"event": "ping"}).decode())
        while orjson.loads(await ws.recv())["event"] != "pong":
            pass
        now = await scrape(gateway)
        assert now.value("city_ws_connections", route=route) == before + 1
        assert now.value("city_ws_connections_opened_total", route=route) == opened + 1

        # A posted message is one fanout frame per local socket of the room.
        frames = now.value("city_fanout_frames_total")
        posted = await gateway.http.post(
            f"/city/rooms/{GENERAL}/messages", json={"body": "fan"}, headers=gateway.auth("u_2")
        )
        assert posted.status_code == 201
        while orjson.loads(await ws.recv())["event"] != "room.message":
            pass
        assert (await scrape(gateway)).value("city_fanout_frames_total") >= frames + 1

    async def closed() -> bool:
        return (await scrape(gateway)).value("city_ws_connections", route=route) == before

    await wait_until(closed)


async def test_presence_transitions_are_counted(gateway: InProcessGateway) -> None:
    before = await scrape(gateway)
    response = await gateway.http.post(
        "/internal/matrix/presence/online",
        json={"user_id": "u_pres_metrics", "status": "online"},
        headers=gateway.auth("u_pres_metrics"),
    )
    assert response.status_code == 200, response.text
    labels = {"from_status": "offline", "to_status": "online"}

    async def counted() -> bool:
        now = await scrape(gateway)
        name = "city_presence_transitions_total"
        return now.value(name, **labels) >= before.value(name, **labels) + 1

    await wait_until(counted)


async def test_outbox_and_inbox_gauges_come_from_postgres(
    gateway: InProcessGateway, db: asyncpg.Connection
) -> None:
    await db.execute(
        """insert into matrix_outbox (room_id, message_id, created_at)
           values ($1, 'm_city_a', now() - interval '42 seconds'),
                  ($1, 'm_city_b', now() - interval '1 second')""",
        GENERAL,
    )
    await db.execute(
        """insert into matrix_inbox (event_id, event, received_at, state) values
             ('$old', '{}'::jsonb, now() - interval '30 seconds', 'pending'),
             ('$done', '{}'::jsonb, now() - interval '90 seconds', 'done')"""
    )
    metrics = await scrape(gateway)
    assert metrics.value("city_matrix_outbox_depth") == 2
    assert 42 <= metrics.value("city_matrix_outbox_oldest_age_seconds") < 120
    assert metrics.value("city_matrix_inbox_pending") == 1
    assert 30 <= metrics.value("city_matrix_inbox_lag_seconds") < 90


async def test_agents_core_latency_and_failures(gateway_factory: GatewayFactory) -> None:
    with FakeAgentsCore() as fake:
        gw = await gateway_factory(agents_core_url=fake.url, agents_core_timeout=2)
        before = await scrape(gw)
        ok = await gw.http.post(
            "/secondme/invoke", json={"prompt": "hi"}, headers=gw.auth("u_agent_metrics")
        )
        assert ok.status_code == 200, ok.text
        fake.set_mode("error500")
        failed = await gw.http.post(
            "/secondme/invoke", json={"prompt": "again"}, headers=gw.auth("u_agent_metrics")
        )
        assert failed.status_code == 502, failed.text
        after = await scrape(gw)

    count = "city_agents_core_seconds_count"
    assert after.value(count) - before.value(count) == 2
    failures = "city_agents_core_failures_total"
    assert (
        after.value(failures, reason="AgentUnavailable")
        - before.value(failures, reason="AgentUnavailable")
        == 1
    )
