"""Matrix → City for reactions: `m.reaction` annotations and their redactions.

Called by the inbox (bridge/inbox.py) inside the event's transaction; the inbox
announces the change (`room.reaction`) after commit. The inbox is keyed by event id,
so a re-sent transaction adds nothing; the reactor's unique index makes a second
annotation of the same key by the same user (which Synapse may accept) a no-op.

Rules, as mautrix bridges apply them: an annotation counts only on a message of the
room it is sent in; its redaction removes it only when the redaction's sender is
the reactor or has the room's `redact` power level (a moderator clearing reactions).
Our ghosts' own reactions come back as echoes and are ignored before this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge import metrics
from bridge.power_levels import PowerLevels
from gateway.core.errors import AppError
from gateway.core.messages import MessageService
from gateway.core.models import ReactionChange
from gateway.core.reactions import ReactionService
from gateway.core.storage import rooms as room_sql


@dataclass(frozen=True, slots=True)
class ReactionOutcome:
    state: str  # done | dropped
    detail: str | None = None
    change: ReactionChange | None = None


def _ignored(reason: str, detail: str) -> ReactionOutcome:
    metrics.MATRIX_EVENTS_IGNORED.labels(reason).inc()
    return ReactionOutcome("dropped", f"ignored ({reason}): {detail}")


async def _room_of(conn: asyncpg.Connection, matrix_room_id: str) -> str | None:
    room = await room_sql.get_room_by_matrix_id(conn, matrix_room_id)
    return room.id if room is not None else None


async def annotation(
    conn: asyncpg.Connection,
    reactions: ReactionService,
    messages: MessageService,
    event: dict[str, Any],
    sender: str,
    matrix_room_id: str,
    content: dict[str, Any],
) -> ReactionOutcome:
    """An Element user's `m.reaction` → a city reaction (matrix_user_id)."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("rel_type") != "m.annotation":
        return ReactionOutcome("dropped", "reaction without an annotation")
    target_id, key = relates.get("event_id"), relates.get("key")
    if not isinstance(target_id, str) or not isinstance(key, str):
        return ReactionOutcome("dropped", "malformed annotation")
    target = await messages.find_by_matrix_event(target_id, db=conn)
    if target is None:
        return ReactionOutcome("dropped", "reaction to a message we do not have")
    if await _room_of(conn, matrix_room_id) != target.room_id:
        return _ignored("reaction_other_room", f"{sender} reacts to {target.id} elsewhere")
    try:
        change = await reactions.add_from_matrix(conn, target, key, sender, event["event_id"])
    except AppError as exc:
        return ReactionOutcome("dropped", f"rejected: {exc.code}: {exc.message}")
    if change is None:
        return ReactionOutcome("dropped", f"{sender} already reacted {key!r} to {target.id}")
    return ReactionOutcome("done", f"reaction on {target.id}", change)


async def redaction(
    conn: asyncpg.Connection,
    reactions: ReactionService,
    power: PowerLevels,
    target_id: str,
    sender: str,
    matrix_room_id: str,
) -> ReactionOutcome | None:
    """A redaction of a reaction event we hold → its removal; None if it is not one."""
    reaction = await reactions.find_by_matrix_event(conn, target_id)
    if reaction is None:
        return None
    if await _room_of(conn, matrix_room_id) != reaction.room_id:
        return _ignored("redaction_other_room", f"{sender} redacts a reaction elsewhere")
    if reaction.matrix_user_id != sender and not await power.can_redact(matrix_room_id, sender):
        return _ignored("redaction_not_permitted", f"{sender} redacts a reaction of another")
    change = await reactions.remove_by_matrix_event(conn, target_id)
    if change is None:  # pragma: no cover - removed meanwhile (the event lock prevents it)
        return ReactionOutcome("dropped", "reaction already removed")
    return ReactionOutcome("done", f"reaction removed (redacted by {sender})", change)
