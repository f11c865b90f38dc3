"""SQL for a city user's edit and delete of their own message (SPEC §13).

Like a post (gateway/core/storage/messages.py), each change is one statement: the
message, its feed event and (with an outbox) the change's queue row for Matrix, all
or nothing. The statement itself checks room and author, so a concurrent change
cannot slip between a check and the write.
"""

from __future__ import annotations

from gateway.core.models import Message
from gateway.core.storage import Executor
from gateway.core.storage.messages import _COLUMNS, _message

# The CTE the outbox's statement reads: the message after the edit / before the delete.
EDITED = "upd"
DELETED = "del"

_EDIT = f"""
with {EDITED} as (
    update city_room_messages set body = $4, edited_at = now()
    where id = $2 and room_id = $1 and author_user_id = $3
    returning {_COLUMNS}
), feed as (
    update city_feed_events
    set payload = payload || jsonb_build_object('body', $4::text, 'snippet', $5::text,
                                                'edited', true)
    where payload->>'message_id' = $2 and exists (select 1 from {EDITED})
){{queue}}
select {_COLUMNS} from {EDITED}
"""

_DELETE = f"""
with {DELETED} as (
    delete from city_room_messages
    where id = $2 and room_id = $1 and author_user_id = $3
    returning {_COLUMNS}
), feed as (
    delete from city_feed_events
    where payload->>'message_id' = $2 and exists (select 1 from {DELETED})
){{queue}}
select {_COLUMNS} from {DELETED}
"""


def edit_statement(queue: str | None = None) -> str:
    return _EDIT.format(queue=f", queued as ({queue})" if queue else "")


def delete_statement(queue: str | None = None) -> str:
    return _DELETE.format(queue=f", queued as ({queue})" if queue else "")


async def edit_own(
    db: Executor,
    statement: str,
    room_id: str,
    message_id: str,
    author_user_id: str,
    body: str,
    body_snippet: str,
) -> Message | None:
    """The message after the edit; None if it is not (any more) the author's in the room."""
    row = await db.fetchrow(statement, room_id, message_id, author_user_id, body, body_snippet)
    return _message(row) if row else None


async def delete_own(
    db: Executor, statement: str, room_id: str, message_id: str, author_user_id: str
) -> Message | None:
    """The message as it was; None if it is not (any more) the author's in the room."""
    row = await db.fetchrow(statement, room_id, message_id, author_user_id)
    return _message(row) if row else None
