"""Per-runtime metrics wiring: counters fed by the hooks, DB gauges refreshed on scrape.

The metric objects themselves are defined in gateway/infra/metrics.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.infra.metrics import (
    INBOX_LAG,
    INBOX_PENDING,
    MESSAGES_POSTED,
    OUTBOX_AGE,
    OUTBOX_DEPTH,
    PRESENCE_TRANSITIONS,
)

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime
    from gateway.core.models import Message as CityMessage

log = logging.getLogger(__name__)


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
