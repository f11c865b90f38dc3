"""The feed keeps `CITY_FEED_KEEP_DAYS` days (docs/data-retention.md): a periodic prune.

Every process runs the loop (no process is special), but one sweep runs at a time
across all of them: a sweep takes a PostgreSQL advisory lock with `pg_try_advisory_lock`
and a process that does not get it skips that round. Without the lock, N processes
would each delete the same oldest rows and N-1 of them would wait on row locks for
nothing. The lock is a session lock on a pooled connection: it is released at the
end of the sweep, and by the pool's reset (or the connection's end) if the sweep is
cancelled or the process dies.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import AsyncExitStack

import asyncpg

from gateway.core.storage.retention import DEFAULT_BATCH, DEFAULT_MAX_BATCHES, prune_feed
from gateway.infra.tasks import TaskGroup

log = logging.getLogger(__name__)

# Advisory lock naming "city feed retention" (migrations use 0x43495459, "CITY").
_LOCK_KEY = 0x43_46_45_44  # "CFED"
# How often a process tries a sweep; a sweep that hit its batch cap goes on soon after.
SWEEP_SECONDS = 60.0
_CATCH_UP_SECONDS = 1.0
# The first sweep, some seconds after start-up (spread over processes started together).
_FIRST_SWEEP_MAX_DELAY = 5.0


class FeedRetention:
    """Deletes feed events older than `keep_days`, one sweep at a time across processes."""

    def __init__(
        self,
        db: asyncpg.Pool,
        keep_days: float,
        *,
        interval_seconds: float = SWEEP_SECONDS,
        batch: int = DEFAULT_BATCH,
        max_batches: int = DEFAULT_MAX_BATCHES,
    ) -> None:
        self._db = db
        self.keep_days = keep_days
        self.interval_seconds = interval_seconds
        self._batch = batch
        self._max_batches = max_batches

    async def sweep(self) -> int | None:
        """One sweep: rows deleted, or None when another process holds the sweep lock."""
        if self.keep_days <= 0:
            return 0  # CITY_FEED_KEEP_DAYS=0 keeps the feed forever
        async with self._db.acquire() as conn:
            if not await conn.fetchval("select pg_try_advisory_lock($1)", _LOCK_KEY):
                return None
            try:
                return await prune_feed(conn, self.keep_days, self._batch, self._max_batches)
            finally:
                await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)

    async def run_forever(self) -> None:
        await asyncio.sleep(random.uniform(0, min(_FIRST_SWEEP_MAX_DELAY, self.interval_seconds)))
        while True:
            capped = False
            try:
                deleted = await self.sweep()
                if deleted:
                    log.info(
                        "feed retention: deleted %d events older than %g days",
                        deleted,
                        self.keep_days,
                    )
                capped = deleted is not None and deleted >= self._batch * self._max_batches
            except Exception as exc:
                # PostgreSQL down or restarting: the next sweep tries again.
                log.warning("feed retention sweep failed: %r", exc)
            await asyncio.sleep(_CATCH_UP_SECONDS if capped else self.interval_seconds)


def start_feed_retention(
    db: asyncpg.Pool, keep_days: float, stack: AsyncExitStack
) -> FeedRetention | None:
    """Starter: the periodic feed prune, or None when `keep_days` is 0 (keep forever)."""
    if keep_days <= 0:
        return None
    retention = FeedRetention(db, keep_days)
    tasks = TaskGroup("feed-retention", log)
    tasks.spawn(retention.run_forever(), name="feed-retention")
    stack.push_async_callback(tasks.aclose)
    return retention
