"""SQL for the outbox's change rows: edits, redactions and reactions (migrations/0007).

The core runs `change_queue_statement` as a CTE of the statement that makes a city
user's change (gateway.core.ports.MessageOutbox), so the change and its row commit
together. The row's `seq` is drawn by the table's trigger under the room's order lock:
it is sent after everything queued in the room before it, the changed message first.
"""

from __future__ import annotations

from gateway.core.ports import OutboxChange
from gateway.core.storage import Executor


def change_queue_statement(change: OutboxChange, stored: str) -> str:
    if change == "edit":
        return (
            "insert into matrix_outbox (room_id, message_id, kind, actor_user_id, payload)"
            f" select room_id, id, 'edit', author_user_id, jsonb_build_object('body', body)"
            f" from {stored}"
        )
    if change == "redact":
        # The message's Matrix event as it was; null while its send is still queued
        # (learn_target_event fills it in if the send happens first).
        return (
            "insert into matrix_outbox"
            " (room_id, message_id, kind, actor_user_id, target_event_id)"
            f" select room_id, id, 'redact', author_user_id, matrix_event_id from {stored}"
        )
    if change in ("react", "unreact"):
        target = "matrix_event_id" if change == "unreact" else "null"
        return (
            "insert into matrix_outbox (room_id, message_id, kind, actor_user_id,"
            " reaction_id, target_event_id, payload)"
            f" select room_id, message_id, '{change}', user_id, id, {target},"
            f" jsonb_build_object('key', key) from {stored} where user_id is not null"
        )
    raise ValueError(f"unknown outbox change {change!r}")


async def learn_target_event(
    db: Executor, *, message_id: str | None = None, reaction_id: int | None = None, event_id: str
) -> None:
    """An event was sent (a message, a reaction) whose city row may be gone already:
    redactions of it waiting in the outbox learn its event id here.

    Run in the sender's transaction after recording the id on the city row: either
    the delete that queued the redaction saw that id (it waited for the row lock), or
    it committed first and this statement sees its row.
    """
    if message_id is not None:
        await db.execute(
            """update matrix_outbox set target_event_id = $2
               where message_id = $1 and kind = 'redact' and target_event_id is null""",
            message_id,
            event_id,
        )
    if reaction_id is not None:
        await db.execute(
            """update matrix_outbox set target_event_id = $2
               where reaction_id = $1 and kind = 'unreact' and target_event_id is null""",
            reaction_id,
            event_id,
        )
