"""Metrics of the outbound adapters: the NATS publisher (gateway/adapters/nats_bus.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

NATS_PUBLISHED = Counter("city_nats_published", "City events acknowledged by JetStream")
NATS_DROPPED = Counter(
    "city_nats_dropped", "City events dropped because the publish queue was full"
)
NATS_PUBLISH_FAILURES = Counter(
    "city_nats_publish_failures", "JetStream publish attempts that failed (retried)"
)
NATS_QUEUE = Gauge("city_nats_queue_depth", "City events waiting to be published to NATS")
NATS_CONNECTED = Gauge("city_nats_connected", "1 while this process is connected to NATS")
