"""Metrics of the realtime edge: room fanout and the WebSocket clients it drops."""

from __future__ import annotations

from prometheus_client import Counter

FANOUT_FRAMES = Counter(
    "city_fanout_frames",
    "Room frames queued to this process's WebSocket clients (one per socket)",
)
FANOUT_DROPPED_CLIENTS = Counter(
    "city_fanout_dropped_clients", "Clients disconnected for falling behind (queue full)"
)
