"""Second Me metrics: Agents Core calls and the per-user question limit."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from gateway.infra.metrics import LATENCY_BUCKETS

AGENTS_CORE_SECONDS = Histogram(
    "city_agents_core_seconds",
    "Latency of Agents Core invocations (successful or not)",
    buckets=LATENCY_BUCKETS,
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
