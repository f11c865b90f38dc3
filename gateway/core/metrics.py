"""Metrics of the city core's rules: messages stored, calls refused by a per-user limit."""

from __future__ import annotations

from prometheus_client import Counter

MESSAGES_POSTED = Counter(
    "city_messages_posted", "Room messages stored by this process", ["source"]
)
# Per-user limits of docs/api.md (gateway/core/ratelimit.py and the socket cap), by limit name.
RATE_LIMITED = Counter(
    "city_rate_limited", "Calls, frames and sockets refused by a per-user limit", ["limit"]
)
