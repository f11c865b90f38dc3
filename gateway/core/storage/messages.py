"""SQL for room messages, together with their feed event and Matrix outbox row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.models import Message
from gateway.core.storage import Executor, Row

_COLUMNS = (
    "id, room_id, author_user_id, author_agent_id, author_matrix_id, body, created_at, seq,"
    " matrix_event_id"
)


def _message(row: Row) -> Message:
    return Message(**dict(row))


@dataclass(frozen=True, slots=True)
class NewMessage:
    id: str
    room_id: str
    body: str
    author_user_id: str | None = None
    author_agent_id: str | None = None
    author_matrix_id: str | None = None
    client_msg_id: str | None = None
    matrix_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewFeedEvent:
    id: str
    kind: str
    payload: dict[str, Any]


# One statement, so one round trip and one implicit transaction: the message, its
# feed event and (when the bridge is on) its outbox row are written together or not
# at all. ON CONFLICT DO NOTHING covers the retry keys (client_msg_id per author,
# matrix_event_id); when it fires, nothing else is written either.
_INSERT = f"""
with ins as (
    insert into city_room_messages
        (id, room_id, author_user_id, author_agent_id, author_matrix_id, body,
         client_msg_id, matrix_event_id)
    values ($1, $2, $3, $4, $5, $6, $7, $8)
    on conflict do nothing
    returning {_COLUMNS}
), feed as (
    insert into city_feed_events (id, kind, room_id, user_id, agent_id, payload)
    select $9, $10, room_id, author_user_id, author_agent_id, $11::jsonb from ins
), outbox as (
    insert into matrix_outbox (room_id, message_id, author_name)
    select room_id, id, $13 from ins where $12::boolean
)
select {_COLUMNS} from ins
"""


async def insert_message(
    db: Executor,
    message: NewMessage,
    feed: NewFeedEvent,
    queue_for_matrix: bool,
    author_name: str | None = None,
) -> Message | None:
    """Write message + feed event (+ outbox row). None if a retry key already exists.

    Raises asyncpg.ForeignKeyViolationError when the room does not exist.
    """
    row = await db.fetchrow(
        _INSERT,
        message.id,
        message.room_id,
        message.author_user_id,
        message.author_agent_id,
        message.author_matrix_id,
        message.body,
        message.client_msg_id,
        message.matrix_event_id,
        feed.id,
        feed.kind,
        feed.payload,
        queue_for_matrix,
        author_name,
    )
    return _message(row) if row else None


async def get_by_client_msg_id(
    db: Executor, author_user_id: str, client_msg_id: str
) -> Message | None:
    row = await db.fetchrow(
        f"select {_COLUMNS} from city_room_messages"
        " where author_user_id = $1 and client_msg_id = $2",
        author_user_id,
        client_msg_id,
    )
    return _message(row) if row else None


async def get_by_matrix_event_id(db: Executor, event_id: str) -> Message | None:
    row = await db.fetchrow(
        f"select {_COLUMNS} from city_room_messages where matrix_event_id = $1", event_id
    )
    return _message(row) if row else None


async def get_message(db: Executor, message_id: str) -> Message | None:
    row = await db.fetchrow(f"select {_COLUMNS} from city_room_messages where id = $1", message_id)
    return _message(row) if row else None


async def latest_messages(
    db: Executor, room_id: str, limit: int, before_seq: int | None = None
) -> list[Message]:
    """The newest `limit` messages (older than `before_seq` if given), oldest first."""
    rows = await db.fetch(
        f"""select * from (
                select {_COLUMNS} from city_room_messages
                where room_id = $1 and ($3::bigint is null or seq < $3)
                order by seq desc limit $2
            ) page order by seq""",
        room_id,
        limit,
        before_seq,
    )
    return [_message(r) for r in rows]


async def seq_of(db: Executor, room_id: str, message_id: str) -> int | None:
    value = await db.fetchval(
        "select seq from city_room_messages where id = $1 and room_id = $2", message_id, room_id
    )
    return int(value) if value is not None else None


async def count_since_hours(db: Executor, hours: int) -> int:
    return int(
        await db.fetchval(
            "select count(*) from city_room_messages"
            " where created_at > now() - make_interval(hours => $1)",
            hours,
        )
    )
