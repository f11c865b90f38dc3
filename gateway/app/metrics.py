"""Per-runtime metrics wiring: counters fed by the hooks, DB gauges refreshed on scrape.

The metric objects are defined by their owners (see gateway/infra/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from bridge.backlog import refresh_backlog_gauges
from gateway.core.events import CityHooks
from gateway.core.metrics import MESSAGES_POSTED
from gateway.core.presence.metrics import PRESENCE_TRANSITIONS

if TYPE_CHECKING:
    from gateway.core.models import Message as CityMessage

log = logging.getLogger(__name__)


_SCRAPE_CACHE_SECONDS = 5.0
_SCRAPE_TIMEOUT_SECONDS = 1.5


@dataclass
class ScrapeGauges:
    """Cluster-wide gauges read from PostgreSQL when /metrics is scraped (cached)."""

    db: asyncpg.Pool
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
        await refresh_backlog_gauges(self.db)


def start_metrics(db: asyncpg.Pool, hooks: CityHooks) -> ScrapeGauges:
    """Starter: count what the hooks announce; returns the scrape-time DB gauges."""

    async def on_presence(user_id: str, previous: str, status: str, ago: int) -> None:
        PRESENCE_TRANSITIONS.labels(previous, status).inc()

    async def on_message(message: CityMessage) -> None:
        MESSAGES_POSTED.labels("matrix" if message.author_matrix_id else "city").inc()

    hooks.presence_changed.append(on_presence)
    hooks.message_posted.append(on_message)
    return ScrapeGauges(db)
