"""How far behind the bridge is, cluster-wide: outbox depth and age, inbox lag.

Read from the bridge's own tables when `/metrics` is scraped (gateway/app/metrics.py
calls this, cached): the app never spells the bridge's SQL.
"""

from __future__ import annotations

from bridge.metrics import INBOX_LAG, INBOX_PENDING, OUTBOX_AGE, OUTBOX_DEPTH
from gateway.core.storage import Executor


async def refresh_backlog_gauges(db: Executor) -> None:
    """Set the outbox/inbox gauges from one query (raises if PostgreSQL does)."""
    row = await db.fetchrow(
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
