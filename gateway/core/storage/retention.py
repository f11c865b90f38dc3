"""Retention of the tables that only grow: the feed and the bridge's inbox.

Policy and figures: docs/data-retention.md. Both functions delete oldest-first in
bounded batches (one short transaction each, so no long lock, no giant WAL burst and
autovacuum keeps up) and stop after `max_batches`; call them from a periodic sweep
(the bridge's maintenance loop already runs every 30 s) and they catch up over a few
sweeps after an outage. Safe to run from several processes at once: concurrent
deletes of the same rows simply find them gone.

Not wired yet; see the report in docs/data-retention.md ("Wiring").
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
    """
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


async def prune_inbox(
    db: Executor,
    keep_processed_hours: float = 24.0,
    keep_failed_days: float = 7.0,
    batch: int = DEFAULT_BATCH,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> int:
    """Delete processed inbox events ('done', 'dropped') older than `keep_processed_hours`
    and 'failed' ones older than `keep_failed_days`; 'pending' rows are never touched.

    A processed row only has to outlive any re-send of its transaction by Synapse (the
    appservice recoverer backs off to ~8.5 min between attempts; a longer gateway
    outage only delays the re-send, so 24 h covers outages shorter than a day), and
    even past that, a re-processed message is still deduplicated by
    city_room_messages.matrix_event_id. 'failed' rows are kept longer for operators.
    Uses ix_matrix_inbox_prune (migrations/0006_history_indexes.sql).
    """
    total = 0
    for _ in range(max_batches):
        status = await db.execute(
            """delete from matrix_inbox where event_id = any(array(
                   select event_id from matrix_inbox
                   where state <> 'pending'
                     and received_at < now() - make_interval(secs => $1)
                     and (state <> 'failed'
                          or received_at < now() - make_interval(secs => $2))
                   order by received_at limit $3))""",
            keep_processed_hours * 3600.0,
            keep_failed_days * 86400.0,
            batch,
        )
        n = _count(status)
        total += n
        if n < batch:
            break
    return total
