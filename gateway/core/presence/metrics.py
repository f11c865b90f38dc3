"""Presence metrics: heartbeats received (by transport) and transitions announced."""

from __future__ import annotations

from prometheus_client import Counter

PRESENCE_HEARTBEATS = Counter(
    "city_presence_heartbeats", "Presence heartbeats received", ["transport"]
)
PRESENCE_TRANSITIONS = Counter(
    "city_presence_transitions",
    "User-level presence transitions announced by this process",
    ["from_status", "to_status"],
)
