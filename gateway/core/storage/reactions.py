"""SQL for reactions (city_message_reactions, migrations/0007), with an outbox's queue row.

A city reaction's add or removal and its queue row for Matrix are one statement
(the outbox's SQL runs as a CTE of it, as for messages: gateway/core/messages.py
says why), so they commit together or not at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from gateway.core.models import ReactionSummary
from gateway.core.storage import Executor, Row

REACTION_COLUMNS = "id, message_id, room_id, key, user_id, matrix_user_id, matrix_event_id"
# The CTE the outbox's statement reads (columns above): the reaction added / removed.
CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class StoredReaction:
    id: int
    message_id: str
    room_id: str
    key: str
    user_id: str | None
    matrix_user_id: str | None
    matrix_event_id: str | None


def _reaction(row: Row) -> StoredReaction:
    return StoredReaction(**dict(row))


def _with_queue(statement: str, queue: str | None) -> str:
    return statement.format(queue=f", queued as ({queue})" if queue else "")


# The message must be in the room; ON CONFLICT (the reactor's unique index) makes a
# second PUT, or a re-delivered Matrix event, add nothing.
_ADD = f"""
with {CHANGED} as (
    insert into city_message_reactions
        (message_id, room_id, key, user_id, matrix_user_id, matrix_event_id)
    select m.id, m.room_id, $3, $4, $5, $6
    from city_room_messages m where m.id = $2 and m.room_id = $1
    on conflict do nothing
    returning {REACTION_COLUMNS}
){{queue}}
select {REACTION_COLUMNS} from {CHANGED}
"""

_REMOVE = f"""
with {CHANGED} as (
    delete from city_message_reactions
    where message_id = $1 and key = $2 and user_id = $3
    returning {REACTION_COLUMNS}
){{queue}}
select {REACTION_COLUMNS} from {CHANGED}
"""

_REMOVE_BY_EVENT = f"""
delete from city_message_reactions where matrix_event_id = $1 returning {REACTION_COLUMNS}
"""


def add_statement(queue: str | None = None) -> str:
    return _with_queue(_ADD, queue)


def remove_statement(queue: str | None = None) -> str:
    return _with_queue(_REMOVE, queue)


async def add(
    db: Executor,
    statement: str,
    room_id: str,
    message_id: str,
    key: str,
    *,
    user_id: str | None,
    matrix_user_id: str | None,
    matrix_event_id: str | None,
) -> StoredReaction | None:
    """The reaction added; None if it was there already or the message is not in the room."""
    row = await db.fetchrow(
        statement, room_id, message_id, key, user_id, matrix_user_id, matrix_event_id
    )
    return _reaction(row) if row else None


async def remove(
    db: Executor, statement: str, message_id: str, key: str, user_id: str
) -> StoredReaction | None:
    row = await db.fetchrow(statement, message_id, key, user_id)
    return _reaction(row) if row else None


async def remove_by_matrix_event(db: Executor, event_id: str) -> StoredReaction | None:
    row = await db.fetchrow(_REMOVE_BY_EVENT, event_id)
    return _reaction(row) if row else None


async def get_by_matrix_event(db: Executor, event_id: str) -> StoredReaction | None:
    row = await db.fetchrow(
        f"select {REACTION_COLUMNS} from city_message_reactions where matrix_event_id = $1",
        event_id,
    )
    return _reaction(row) if row else None


async def exists(db: Executor, reaction_id: int) -> bool:
    found = await db.fetchval("select 1 from city_message_reactions where id = $1", reaction_id)
    return found is not None


async def set_matrix_event_id(db: Executor, reaction_id: int, event_id: str) -> bool:
    done = await db.fetchval(
        "update city_message_reactions set matrix_event_id = $2 where id = $1 returning id",
        reaction_id,
        event_id,
    )
    return done is not None


async def count(db: Executor, message_id: str, key: str) -> int:
    return int(
        await db.fetchval(
            "select count(*) from city_message_reactions where message_id = $1 and key = $2",
            message_id,
            key,
        )
    )


async def summaries(
    db: Executor, message_ids: list[str], viewer: str | None
) -> dict[str, tuple[ReactionSummary, ...]]:
    """Each message's reactions as [{key, count, me}], one query for the whole page.

    Keys in the order they were first used on the message (as Element shows them).
    """
    if not message_ids:
        return {}
    rows = await db.fetch(
        """select message_id, key, count(*) as n,
                  coalesce(bool_or(user_id = $2), false) as me
           from city_message_reactions
           where message_id = any($1::text[])
           group by message_id, key
           order by message_id, min(id)""",
        message_ids,
        viewer,
    )
    out: defaultdict[str, list[ReactionSummary]] = defaultdict(list)
    for r in rows:
        out[r["message_id"]].append(ReactionSummary(key=r["key"], count=r["n"], me=r["me"]))
    return {k: tuple(v) for k, v in out.items()}
