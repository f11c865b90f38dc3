"""Prometheus helpers shared by every metric owner.

Metric objects live with the part that records them, one module per owner, all
in prometheus_client's default registry (served by `GET /metrics`) and named
`city_…` (docs/operations.md lists them all):

* gateway/http/metrics.py — HTTP requests and WebSocket connections;
* gateway/realtime/metrics.py — room fanout;
* gateway/core/metrics.py — messages stored, per-user limits;
* gateway/core/presence/metrics.py — heartbeats and transitions;
* gateway/core/secondme/metrics.py — Agents Core calls, Second Me rate limits;
* gateway/adapters/metrics.py — the NATS publisher;
* bridge/metrics.py — the Matrix bridge (sends, presence, outbox/inbox gauges).

This module holds only what they share: latency buckets and `timed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

# Latency buckets (seconds) for calls that should take milliseconds but may take many
# seconds when something is slow: HTTP requests, Synapse calls, Agents Core.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
