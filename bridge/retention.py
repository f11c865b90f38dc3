"""Retention of the bridge's inbox (docs/data-retention.md, "matrix_inbox").

`matrix_inbox` is keyed by `event_id` so that a transaction Synapse re-sends is
harmless; a row only has to live as long as such a re-send can come. Pruned by the
bridge's maintenance sweep (bridge/service.py, every 30 s).
"""

from __future__ import annotations

from gateway.core.storage import Executor

# Retention (docs/data-retention.md): a processed row only has to outlive any re-send
# of its transaction by Synapse (its appservice recoverer backs off to ~8.5 min; a
# gateway outage only delays the re-send), so 24 h covers outages shorter than a day;
# past that a re-processed message is still deduplicated by
# city_room_messages.matrix_event_id. 'failed' rows are kept longer, for operators.
INBOX_KEEP_PROCESSED_HOURS = 24.0
INBOX_KEEP_FAILED_DAYS = 7.0
# Rows per DELETE: ~40-80 ms each at 2M rows on the bench machine, short enough to
# interleave with inbox writes; a sweep stops after PRUNE_MAX_BATCHES and the next one
# catches up (after an outage, say).
PRUNE_BATCH = 5_000
PRUNE_MAX_BATCHES = 200


async def prune_inbox(
    db: Executor,
    keep_processed_hours: float = INBOX_KEEP_PROCESSED_HOURS,
    keep_failed_days: float = INBOX_KEEP_FAILED_DAYS,
    batch: int = PRUNE_BATCH,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> int:
    """Delete processed events ('done', 'dropped') older than `keep_processed_hours`
    and 'failed' ones older than `keep_failed_days`; 'pending' rows are never touched.

    Oldest first, in batches (one short transaction each: no long lock, no WAL burst),
    on ix_matrix_inbox_prune (migrations/0006_history_indexes.sql). Safe from several
    processes at once: a row deleted by one is simply gone for the other.
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
        deleted = int(status.split()[-1])  # "DELETE <n>"
        total += deleted
        if deleted < batch:
            break
    return total
