"""Prometheus metrics: every metric object of the service.

All metrics live in prometheus_client's default registry (served by `GET /metrics`
in gateway/http/health.py) and are named `city_…`. Other modules record with one
line (`metrics.MATRIX_SEND_FAILURES.labels("timeout").inc()`, `with
metrics.timed(...)`), so this file is the one list of what is measured
(docs/operations.md describes each).

Metric objects are process-wide by nature (the registry is). The HTTP middleware
is in gateway/http/middleware.py; the database-backed gauges belong to a runtime
(gateway/app/metrics.py) and are refreshed on scrape.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram

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
# Per-user limits of SPEC §12 (gateway/core/ratelimit.py and the socket cap), by limit name.
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

# --- NATS bus (gateway/adapters/nats_bus.py) ------------------------------------------------
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
