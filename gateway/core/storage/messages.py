"""SQL for room messages, together with their feed event (and an outbox's queue row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.models import Attachment, Message
from gateway.core.storage import Executor, Row

_COLUMNS = (
    "id, room_id, author_user_id, author_agent_id, author_matrix_id, body, created_at, seq,"
    " matrix_event_id, reply_to, attachment, edited_at"
)


def _message(row: Row) -> Message:
    data = dict(row)
    if data.get("attachment") is not None:
        data["attachment"] = Attachment.from_stored(data["attachment"])
    return Message(**data)


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
    reply_to: str | None = None
    attachment: Attachment | None = None


@dataclass(frozen=True, slots=True)
class NewFeedEvent:
    id: str
    kind: str
    payload: dict[str, Any]


# One statement, so one round trip and one implicit transaction: the message, its
# feed event and (with an outbox, gateway.core.ports.MessageOutbox) its queue row are
# written together or not at all. ON CONFLICT DO NOTHING covers the retry keys
# (client_msg_id per author, matrix_event_id); when it fires, nothing else is written.
_INSERT = f"""
with ins as (
    insert into city_room_messages
        (id, room_id, author_user_id, author_agent_id, author_matrix_id, body,
         client_msg_id, matrix_event_id, reply_to, attachment)
    values ($1, $2, $3, $4, $5, $6, $7, $8, $12, $13::jsonb)
    on conflict do nothing
    returning {_COLUMNS}
), feed as (
    insert into city_feed_events (id, kind, room_id, user_id, agent_id, payload)
    select $9, $10, room_id, author_user_id, author_agent_id, $11::jsonb from ins
){{queue}}
select {_COLUMNS} from ins
"""
# What the outbox's statement may use: the stored row (CTE `ins`, the columns above)
# and the author's display name from their token.
STORED = "ins"
AUTHOR_NAME = "$14::text"


def insert_statement(queue: str | None = None) -> str:
    """The insert, with `queue` (a statement reading STORED and AUTHOR_NAME) as a CTE."""
    return _INSERT.format(queue=f", queued as ({queue})" if queue else "")


PLAIN_INSERT = insert_statement()


async def insert_message(
    db: Executor,
    message: NewMessage,
    feed: NewFeedEvent,
    *,
    queued: str | None = None,
    author_name: str | None = None,
) -> Message | None:
    """Write message + feed event (+ a queue row). None if a retry key already exists.

    `queued`: an `insert_statement(queue)` to run instead of the plain insert; it also
    receives `author_name`. Raises asyncpg.ForeignKeyViolationError when the room does
    not exist.
    """
    args: list[Any] = [
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
        message.reply_to,
        message.attachment.as_stored() if message.attachment is not None else None,
    ]
    if queued is not None:
        args.append(author_name)
    row = await db.fetchrow(queued or PLAIN_INSERT, *args)
    return _message(row) if row else None


# An edit from any side: the body, and the feed event that shows it, in one statement.
_EDIT = f"""
with upd as (
    update city_room_messages set body = $2, edited_at = now() where id = $1
    returning {_COLUMNS}
), feed as (
    update city_feed_events
    set payload = payload || jsonb_build_object('body', $2::text, 'snippet', $3::text,
                                                'edited', true)
    where payload->>'message_id' = $1 and exists (select 1 from upd)
)
select {_COLUMNS} from upd
"""

_DELETE = f"""
with del as (
    delete from city_room_messages where id = $1 returning {_COLUMNS}
), feed as (
    delete from city_feed_events
    where payload->>'message_id' = $1 and exists (select 1 from del)
)
select {_COLUMNS} from del
"""


async def edit_message(
    db: Executor, message_id: str, body: str, body_snippet: str
) -> Message | None:
    """Replace the body (and its feed event's); None if there is no such message."""
    row = await db.fetchrow(_EDIT, message_id, body, body_snippet)
    return _message(row) if row else None


async def delete_message(db: Executor, message_id: str) -> Message | None:
    """Remove the message and its feed event; the message as it was, or None."""
    row = await db.fetchrow(_DELETE, message_id)
    return _message(row) if row else None


async def set_matrix_event_id(
    db: Executor, message_id: str, event_id: str, *, only_if_missing: bool
) -> bool:
    """Record the Matrix copy of a message. With `only_if_missing` (an echo seen before
    the send's answer), a known id — on this message or another — is kept."""
    done = await db.fetchval(
        """update city_room_messages set matrix_event_id = $2
           where id = $1
             and (not $3::boolean or (matrix_event_id is null and not exists (
                  select 1 from city_room_messages where matrix_event_id = $2)))
           returning id""",
        message_id,
        event_id,
        only_if_missing,
    )
    return done is not None


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


async def room_of(db: Executor, message_id: str) -> str | None:
    """The room of a message (None if there is no such message)."""
    value = await db.fetchval("select room_id from city_room_messages where id = $1", message_id)
    return None if value is None else str(value)


async def get_message(db: Executor, message_id: str) -> Message | None:
    row = await db.fetchrow(f"select {_COLUMNS} from city_room_messages where id = $1", message_id)
    return _message(row) if row else None


async def latest_messages(
    db: Executor, room_id: str, limit: int, before_seq: int | None = None
) -> list[Message]:
    """The newest `limit` messages (older than `before_seq` if given), oldest first."""
    # `seq < coalesce(cursor, max)` rather than `(cursor is null or seq < cursor)`: the
    # cursor stays an index condition even under a generic plan of the prepared
    # statement (bench/history.py: a deep page went from 0.2 ms to 865 ms without it).
    rows = await db.fetch(
        f"""select * from (
                select {_COLUMNS} from city_room_messages
                where room_id = $1 and seq < coalesce($3::bigint, 9223372036854775807)
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
