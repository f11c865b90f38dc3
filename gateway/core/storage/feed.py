"""SQL for the city feed."""

from __future__ import annotations

from gateway.core.models import FeedEvent
from gateway.core.storage import Executor, Row

_COLUMNS = "id, kind, room_id, user_id, agent_id, payload, created_at"


def _event(row: Row) -> FeedEvent:
    return FeedEvent(**dict(row))


async def latest_events(db: Executor, limit: int, before_seq: int | None = None) -> list[FeedEvent]:
    """Newest first."""
    rows = await db.fetch(
        f"""select {_COLUMNS} from city_feed_events
            where ($2::bigint is null or seq < $2)
            order by seq desc limit $1""",
        limit,
        before_seq,
    )
    return [_event(r) for r in rows]


async def seq_of(db: Executor, event_id: str) -> int | None:
    value = await db.fetchval("select seq from city_feed_events where id = $1", event_id)
    return int(value) if value is not None else None
