"""Prometheus metrics: every metric object of the service, and the HTTP middleware.

All metrics live in prometheus_client's default registry (served by `GET /metrics`
in gateway/api/health.py) and are named `city_…`. Other modules record with one
line (`metrics.MATRIX_SEND_FAILURES.labels("timeout").inc()`, `with
metrics.timed(...)`), so this file is the one list of what is measured
(docs/operations.md describes each).

Metric objects are process-wide by nature (the registry is); nothing else here
is: the database-backed gauges belong to a runtime (`start_metrics`) and are
refreshed on scrape, at most every `_SCRAPE_CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import REQUEST_ID, USER_ID

if TYPE_CHECKING:
    from gateway.models import Message as CityMessage
    from gateway.runtime import Runtime

log = logging.getLogger(__name__)
access_log = logging.getLogger("gateway.access")

# Latency buckets (seconds) for calls that should take milliseconds but may take many
# seconds when something is slow: HTTP requests, Synapse calls, Agents Core.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- HTTP and WebSockets (recorded by MetricsMiddleware) ---------------------------
HTTP_REQUESTS = Counter(
    "city_http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "city_http_request_duration_seconds",
    "Time from request start to the end of the response body",
    ["method", "route"],
    buckets=_BUCKETS,
)
WS_CONNECTIONS = Gauge(
    "city_ws_connections", "WebSocket connections open on this process", ["route"]
)
WS_OPENED = Counter("city_ws_connections_opened", "WebSocket connections accepted", ["route"])

# --- realtime (fanout, presence) ---------------------------------------------------
FANOUT_FRAMES = Counter(
    "city_fanout_frames",
    "Room frames queued to this process's WebSocket clients (one per socket)",
)
FANOUT_DROPPED_CLIENTS = Counter(
    "city_fanout_dropped_clients", "Clients disconnected for falling behind (queue full)"
)
PRESENCE_HEARTBEATS = Counter(
    "city_presence_heartbeats", "Presence heartbeats received", ["transport"]
)
PRESENCE_TRANSITIONS = Counter(
    "city_presence_transitions",
    "User-level presence transitions announced by this process",
    ["from_status", "to_status"],
)
MESSAGES_POSTED = Counter(
    "city_messages_posted", "Room messages stored by this process", ["source"]
)
# Per-user limits of SPEC §12 (gateway/ratelimit.py and the socket cap), by limit name.
RATE_LIMITED = Counter(
    "city_rate_limited", "Calls, frames and sockets refused by a per-user limit", ["limit"]
)

# --- Matrix bridge -----------------------------------------------------------------
MATRIX_SEND_SECONDS = Histogram(
    "city_matrix_send_seconds",
    "Latency of sending one event to Synapse (successful or not)",
    buckets=_BUCKETS,
)
MATRIX_SEND_FAILURES = Counter(
    "city_matrix_send_failures",
    "Sends to Synapse that failed, by exception type",
    ["reason"],
)
MATRIX_PRESENCE_SENT = Counter(
    "city_matrix_presence_sent",
    "Ghost presence PUTs sent to Synapse, by why: change (a city transition), refresh,"
    " reassert (after the bridge acted as an away ghost), reconcile (Matrix differed"
    " from the city, e.g. after Redis lost its data)",
    ["reason"],
)
MATRIX_PRESENCE_DEBOUNCED = Counter(
    "city_matrix_presence_debounced",
    "Ghost presence updates never sent because a newer one replaced them in the window",
)
# Matrix events the inbox refused to apply (SPEC §12): a redaction from someone who is
# neither the author nor allowed to redact, an edit by someone else, either aimed at a
# message of another room.
MATRIX_EVENTS_IGNORED = Counter(
    "city_matrix_events_ignored",
    "Matrix redactions and edits not applied to the city, by reason",
    ["reason"],
)
# Computed on scrape from PostgreSQL (cluster-wide values, same on every process).
OUTBOX_DEPTH = Gauge("city_matrix_outbox_depth", "City messages waiting to be sent to Matrix")
OUTBOX_AGE = Gauge(
    "city_matrix_outbox_oldest_age_seconds",
    "Age of the oldest message waiting for Matrix (0 when empty)",
)
INBOX_PENDING = Gauge("city_matrix_inbox_pending", "Matrix events received but not yet processed")
INBOX_LAG = Gauge(
    "city_matrix_inbox_lag_seconds",
    "Age of the oldest unprocessed Matrix event (0 when none)",
)

# --- Agents Core -------------------------------------------------------------------
AGENTS_CORE_SECONDS = Histogram(
    "city_agents_core_seconds",
    "Latency of Agents Core invocations (successful or not)",
    buckets=_BUCKETS,
)
AGENTS_CORE_FAILURES = Counter(
    "city_agents_core_failures",
    "Agents Core invocations that failed, by exception type",
    ["reason"],
)
SECONDME_RATE_LIMITED = Counter(
    "city_secondme_rate_limited",
    "Second Me questions in rooms/DMs refused by the per-user rate limit, by what the"
    " room got: 'notice' (the user's one notice in the window) or 'silent'",
    ["outcome"],
)
SECONDME_INVITES = Counter(
    "city_secondme_invites",
    "Invites to @secondme, by outcome: accepted, rejected_room (not a DM or bridged"
    " room), rejected_limit (over the inviter's hourly cap)",
    ["outcome"],
)

# --- NATS bus (gateway/nats_bus.py) ------------------------------------------------
NATS_PUBLISHED = Counter("city_nats_published", "City events acknowledged by JetStream")
NATS_DROPPED = Counter(
    "city_nats_dropped", "City events dropped because the publish queue was full"
)
NATS_PUBLISH_FAILURES = Counter(
    "city_nats_publish_failures", "JetStream publish attempts that failed (retried)"
)
NATS_QUEUE = Gauge("city_nats_queue_depth", "City events waiting to be published to NATS")
NATS_CONNECTED = Gauge("city_nats_connected", "1 while this process is connected to NATS")


@contextlib.contextmanager
def timed(histogram: Histogram, failures: Counter | None = None, *labels: str) -> Iterator[None]:
    """Observe the block's duration; count an exception as a failure.

    The failure's last label is the exception's type name (a bounded set);
    `labels` are the values before it: `timed(H.labels("x"), F, "x")`.
    Cancellation is not a failure.
    """
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        if failures is not None:
            failures.labels(*labels, type(exc).__name__).inc()
        raise
    finally:
        histogram.observe(time.perf_counter() - started)


# --- the middleware ----------------------------------------------------------------
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_UNMATCHED = "<unmatched>"
# Probes and scrapes are frequent and uninteresting in the access log.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_label(scope: Scope) -> str:
    """The route template (`/city/rooms/{room_id}`), never the raw path: bounded labels."""
    path: object = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else _UNMATCHED


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = bytes(value).decode("latin-1")
            if _REQUEST_ID_RE.match(candidate):
                return candidate
            break
    return secrets.token_hex(8)


# Methods outside this set are labelled "OTHER": a client picks the method, and a
# label must not take arbitrary values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Not an HTTP status: nginx's "client closed the request" (the client went away
# before the answer), kept out of the 5xx that alerts watch.
CLIENT_CLOSED_REQUEST = 499


def _logged_path(scope: Scope) -> str:
    """The path as the client sent it (percent-encoded, never the query string)."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(scope["path"])


class MetricsMiddleware:
    """Request id, metrics and the access log for every HTTP request and WebSocket.

    Pure ASGI (no per-request task, no body buffering): it wraps `send` to see the
    status and adds `X-Request-ID` to the response headers. The request id (from the
    client's `X-Request-ID` when sane, else generated) is put in a contextvar that
    the logging filter copies into every record logged while handling the request.

    A request whose client went away before it was answered is recorded as 499, not
    as the 500 (or whatever the app tried to send into the closed connection). An
    exception that reaches here after the response was completely sent (Starlette
    re-raises after rendering a 500, already logged by gateway/errors.py) stops here:
    passed on, it would make uvicorn drop the keep-alive connection for no reason.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        REQUEST_ID.set(request_id)
        USER_ID.set(None)
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        started = time.perf_counter()
        disconnected = responded = complete = False

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not responded:
                disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, responded, complete
            if message["type"] == "http.response.start":
                responded = True
                status = CLIENT_CLOSED_REQUEST if disconnected else message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            if not complete:
                raise  # a half-sent response: only closing the connection ends it
            log.debug("exception after a complete response (logged where raised)")
        finally:
            if disconnected and not responded:
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - started
            method = scope["method"]
            label = method if method in _METHODS else "OTHER"
            route = _route_label(scope)
            HTTP_REQUESTS.labels(label, route, str(status)).inc()
            HTTP_DURATION.labels(label, route).observe(elapsed)
            if scope["path"] not in _QUIET_PATHS and access_log.isEnabledFor(logging.INFO):
                # LogHygiene (gateway/logs.py) escapes control characters in the line.
                access_log.info(
                    "%s %s %d %.1fms",
                    method,
                    _logged_path(scope),
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        REQUEST_ID.set(_request_id(scope))
        USER_ID.set(None)
        accepted = False
        route = _UNMATCHED

        async def send_wrapper(message: Message) -> None:
            nonlocal accepted, route
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                route = _route_label(scope)
                WS_CONNECTIONS.labels(route).inc()
                WS_OPENED.labels(route).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if accepted:
                WS_CONNECTIONS.labels(route).dec()


# --- per-runtime wiring ------------------------------------------------------------
_SCRAPE_CACHE_SECONDS = 5.0
_SCRAPE_TIMEOUT_SECONDS = 1.5
EXTENSION = "metrics"


@dataclass
class ScrapeGauges:
    """Cluster-wide gauges read from PostgreSQL when /metrics is scraped (cached)."""

    rt: Runtime
    refreshed_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self) -> None:
        if time.monotonic() - self.refreshed_at < _SCRAPE_CACHE_SECONDS:
            return
        async with self.lock:
            if time.monotonic() - self.refreshed_at < _SCRAPE_CACHE_SECONDS:
                return  # another scrape refreshed while we waited
            try:
                async with asyncio.timeout(_SCRAPE_TIMEOUT_SECONDS):
                    await self._query()
            except Exception as exc:
                # Stale gauges are better than a failing scrape; /readyz says why.
                log.warning("metrics: reading outbox/inbox gauges failed: %s", exc)
            self.refreshed_at = time.monotonic()

    async def _query(self) -> None:
        row = await self.rt.db.fetchrow(
            """select
                 (select count(*) from matrix_outbox) as outbox_depth,
                 (select coalesce(extract(epoch from now() - min(created_at)), 0)
                    from matrix_outbox) as outbox_age,
                 (select count(*) from matrix_inbox where state = 'pending') as inbox_pending,
                 (select coalesce(extract(epoch from now() - min(received_at)), 0)
                    from matrix_inbox where state = 'pending') as inbox_lag"""
        )
        assert row is not None
        OUTBOX_DEPTH.set(row["outbox_depth"])
        OUTBOX_AGE.set(float(row["outbox_age"]))
        INBOX_PENDING.set(row["inbox_pending"])
        INBOX_LAG.set(float(row["inbox_lag"]))


async def refresh_on_scrape(rt: Runtime) -> None:
    """Called by `GET /metrics` before rendering; cheap when called often."""
    gauges = rt.extensions.get(EXTENSION)
    if isinstance(gauges, ScrapeGauges):
        await gauges.refresh()


async def start_metrics(rt: Runtime, stack: AsyncExitStack) -> None:
    """Subsystem starter: count what the hooks announce; scrape-time DB gauges."""
    rt.extensions[EXTENSION] = ScrapeGauges(rt)

    async def on_presence(user_id: str, previous: str, status: str, ago: int) -> None:
        PRESENCE_TRANSITIONS.labels(previous, status).inc()

    async def on_message(message: CityMessage) -> None:
        MESSAGES_POSTED.labels("matrix" if message.author_matrix_id else "city").inc()

    rt.hooks.presence_changed.append(on_presence)
    rt.hooks.message_posted.append(on_message)
