"""Retention of the city feed (`city_feed_events`), the core table that only grows.

Policy and figures: docs/data-retention.md. Deletes oldest-first in bounded batches
(one short transaction each, so no long lock, no giant WAL burst and autovacuum keeps
up) and stops after `max_batches`; run from a periodic sweep
(gateway/core/feed_retention.py), it catches up over a few sweeps after an outage.
Safe to run from several processes at once: concurrent deletes of the same rows
simply find them gone. (The bridge's inbox has its own: bridge/retention.py.)
"""

from __future__ import annotations

from gateway.core.storage import Executor

# Rows per DELETE: ~10-40 ms each on the bench machine, short enough to interleave
# with the message inserts.
DEFAULT_BATCH = 5_000
DEFAULT_MAX_BATCHES = 200


def _count(status: str) -> int:
    return int(status.split()[-1])  # "DELETE <n>"


async def prune_feed(
    db: Executor,
    keep_days: float,
    batch: int = DEFAULT_BATCH,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> int:
    """Delete feed events older than `keep_days`; return how many were deleted.

    Only `city_feed_events`: the messages themselves (room history) are kept. A
    client paging the feed past the horizon gets `before=<pruned id>` → 404
    event_not_found, the same as for an unknown id. Uses ix_city_feed_time.
    `keep_days` 0 (or less) keeps everything: nothing is deleted.
    """
    if keep_days <= 0:
        return 0
    total = 0
    for _ in range(max_batches):
        status = await db.execute(
            """delete from city_feed_events where id = any(array(
                   select id from city_feed_events
                   where created_at < now() - make_interval(secs => $1)
                   order by created_at limit $2))""",
            keep_days * 86400.0,
            batch,
        )
        n = _count(status)
        total += n
        if n < batch:
            break
    return total
