"""SQL for the city feed."""

from __future__ import annotations

from typing import Any

from gateway.models import FeedEvent
from gateway.storage import Executor, Row

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


async def insert_event(
    db: Executor,
    *,
    event_id: str,
    kind: str,
    room_id: str | None,
    user_id: str | None,
    agent_id: str | None,
    payload: dict[str, Any],
) -> FeedEvent:
    row = await db.fetchrow(
        f"""insert into city_feed_events (id, kind, room_id, user_id, agent_id, payload)
            values ($1, $2, $3, $4, $5, $6::jsonb) returning {_COLUMNS}""",
        event_id,
        kind,
        room_id,
        user_id,
        agent_id,
        payload,
    )
    return _event(row)
