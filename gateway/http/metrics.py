"""Metrics of the HTTP edge, recorded by `MetricsMiddleware` (gateway/http/middleware.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.infra.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "city_http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "city_http_request_duration_seconds",
    "Time from request start to the end of the response body",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
WS_CONNECTIONS = Gauge(
    "city_ws_connections", "WebSocket connections open on this process", ["route"]
)
WS_OPENED = Counter("city_ws_connections_opened", "WebSocket connections accepted", ["route"])
