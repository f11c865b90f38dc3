"""Rules for reading the city feed (City Home dashboard)."""

from __future__ import annotations

from gateway.core.errors import not_found
from gateway.core.models import FeedEvent
from gateway.core.storage import Executor
from gateway.core.storage import feed as feed_sql


class FeedService:
    def __init__(self, db: Executor) -> None:
        self._db = db

    async def latest(self, limit: int, before: str | None) -> list[FeedEvent]:
        before_seq: int | None = None
        if before is not None:
            before_seq = await feed_sql.seq_of(self._db, before)
            if before_seq is None:
                raise not_found("event_not_found", f"feed event {before!r} does not exist")
        return await feed_sql.latest_events(self._db, limit, before_seq)
