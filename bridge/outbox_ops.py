"""City → Matrix for changes: edits, deletes and reactions of city users (SPEC §13).

The outbox sender (bridge/outbox.py) drains a room's rows in `seq` order with the
room's messages, one worker per room cluster-wide, and hands every row that is not a
message to `ChangeSender.deliver`, inside the transaction that holds the row's lock.
Each change is sent as the acting user's ghost, as mautrix bridges do:

- edit    → `m.room.message` with `m.new_content` and `m.relates_to` `m.replace`,
            the body prefixed `* ` as the fallback for clients without edits;
- redact  → a redaction of the message's event;
- react   → `m.reaction` (`m.relates_to` `m.annotation`, the message's event, key);
- unreact → a redaction of that reaction event.

The txnId is the row's `op_key` (random, stored), so a retry is answered with the
first event while Synapse remembers it. A send that may have reached Synapse
(`uncertain`) is looked up first — the edit by its `city.op_key` among the message's
replacements, the reaction among the ghost's annotations with that key, the redaction
by the target's `redacted_because` — so a Synapse restart never doubles a change.
A change whose subject is gone or never reached Matrix is dropped without a send.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from prometheus_client import Counter

from bridge import storage
from bridge.ghosts import Ghosts
from bridge.matrix import MatrixClient, MatrixError
from bridge.naming import Names
from bridge.outbox_queue import learn_target_event
from bridge.rooms import RoomMapper
from gateway.core.reactions import ReactionService

log = logging.getLogger(__name__)

CITY_MESSAGE_ID = "city.message_id"  # as bridge/outbox.py puts it on messages
OP_KEY = "city.op_key"

CHANGES_SENT = Counter(
    "city_matrix_outbox_changes_sent",
    "City edits, redactions and reactions delivered to Matrix by this process",
    ["kind"],
)


def edit_content(body: str, target_event_id: str, op_key: str) -> dict[str, Any]:
    """An `m.replace` as the spec and Element write it (`* ` fallback body)."""
    return {
        "msgtype": "m.text",
        "body": f"* {body}",
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_event_id},
        OP_KEY: op_key,
    }


def reaction_content(key: str, target_event_id: str, op_key: str) -> dict[str, Any]:
    return {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": target_event_id, "key": key},
        OP_KEY: op_key,
    }


class ChangeSender:
    def __init__(
        self,
        matrix: MatrixClient,
        names: Names,
        rooms: RoomMapper,
        ghosts: Ghosts,
        reactions: ReactionService,
    ) -> None:
        self._matrix = matrix
        self._names = names
        self._rooms = rooms
        self._ghosts = ghosts
        self._reactions = reactions
        self.sent = 0  # changes delivered by this process (for tests)

    async def deliver(self, conn: asyncpg.Connection, head: storage.OutboxRow) -> None:
        """Send one change; raises MatrixError / MatrixUnavailable for the caller's retry."""
        if head.actor_user_id is None:
            return
        matrix_room_id = await self._rooms.matrix_room_for(head.room_id)
        if matrix_room_id is None:
            return  # the city room is gone (cascade removes the row too)
        ghost = self._names.ghost_for(head.actor_user_id)
        send = {
            "edit": self._edit,
            "redact": self._redact,
            "react": self._react,
            "unreact": self._unreact,
        }.get(head.kind)
        if send is None:
            log.error("outbox row %s has an unknown kind %r: dropped", head.id, head.kind)
            return
        await self._ghosts.ensure(ghost)
        await self._ghosts.ensure_joined(ghost, matrix_room_id)
        try:
            done = await send(conn, head, matrix_room_id, ghost)
        except MatrixError as exc:
            if exc.status != 403:
                raise
            # Kicked or left since we joined: join again, once (as for messages).
            await self._ghosts.forget_membership(ghost, matrix_room_id)
            await self._ghosts.ensure_joined(ghost, matrix_room_id)
            done = await send(conn, head, matrix_room_id, ghost)
        if done:
            self.sent += 1
            CHANGES_SENT.labels(head.kind).inc()

    # --- one per kind: True when something was sent --------------------------------------
    async def _edit(
        self, conn: asyncpg.Connection, head: storage.OutboxRow, room: str, ghost: str
    ) -> bool:
        message = head.message
        body = (head.payload or {}).get("body")
        if message is None or message.matrix_event_id is None or not isinstance(body, str):
            return False  # deleted since (its redaction follows), or never in Matrix
        target = message.matrix_event_id
        if head.uncertain and await self._find_edit(room, target, head.op_key):
            return False
        content = edit_content(body, target, head.op_key)
        await self._matrix.send(room, "m.room.message", head.op_key, content, ghost)
        return True

    async def _redact(
        self, conn: asyncpg.Connection, head: storage.OutboxRow, room: str, ghost: str
    ) -> bool:
        target = head.target_event_id or await self._find_message(room, ghost, head.message_id)
        if target is None:
            return False  # the message never reached Matrix: nothing to take back
        if head.uncertain and await self._redacted(room, target):
            return False
        await self._matrix.redact(room, target, head.op_key, ghost)
        return True

    async def _react(
        self, conn: asyncpg.Connection, head: storage.OutboxRow, room: str, ghost: str
    ) -> bool:
        message = head.message
        key = (head.payload or {}).get("key")
        if head.reaction_id is None or not isinstance(key, str):
            return False
        if message is None or message.matrix_event_id is None:
            return False  # the message is gone or never reached Matrix
        if not await self._reactions.exists(head.reaction_id, db=conn):
            return False  # removed before it was sent: neither is sent
        target = message.matrix_event_id
        event_id = None
        if head.uncertain:
            event_id = await self._find_annotation(room, target, ghost, key)
        sent = event_id is None
        if event_id is None:
            content = reaction_content(key, target, head.op_key)
            event_id = await self._matrix.send(room, "m.reaction", head.op_key, content, ghost)
        await self._reactions.record_matrix_event_id(head.reaction_id, event_id, db=conn)
        await learn_target_event(conn, reaction_id=head.reaction_id, event_id=event_id)
        return sent

    async def _unreact(
        self, conn: asyncpg.Connection, head: storage.OutboxRow, room: str, ghost: str
    ) -> bool:
        target = head.target_event_id
        key = (head.payload or {}).get("key")
        message = head.message
        if target is None and isinstance(key, str) and message and message.matrix_event_id:
            # The react's answer was lost, or it was never sent: look for it.
            target = await self._find_annotation(room, message.matrix_event_id, ghost, key)
        if target is None:
            return False
        if head.uncertain and await self._redacted(room, target):
            return False
        await self._matrix.redact(room, target, head.op_key, ghost)
        return True

    # --- lookups -------------------------------------------------------------------------
    async def _find_edit(self, room: str, target: str, op_key: str) -> bool:
        events = await self._matrix.relations(
            room, target, "m.replace", "m.room.message", user_id=self._names.bot
        )
        return any((e.get("content") or {}).get(OP_KEY) == op_key for e in events)

    async def _find_annotation(self, room: str, target: str, ghost: str, key: str) -> str | None:
        """The ghost's live `m.reaction` with `key` on `target` (Matrix allows one)."""
        events = await self._matrix.relations(
            room, target, "m.annotation", "m.reaction", user_id=self._names.bot
        )
        for event in events:
            relates = (event.get("content") or {}).get("m.relates_to") or {}
            unsigned = event.get("unsigned") or {}
            if (
                event.get("sender") == ghost
                and relates.get("key") == key
                and "redacted_because" not in unsigned
                and isinstance(event.get("event_id"), str)
            ):
                return str(event["event_id"])
        return None

    async def _find_message(self, room: str, ghost: str, message_id: str) -> str | None:
        """The Matrix copy of a deleted city message whose event id we never learned
        (its send's answer was lost): looked up by the id its content carries."""
        events = await self._matrix.recent_events(
            room, user_id=self._names.bot, senders=[ghost], limit=100
        )
        for event in events:
            content = event.get("content")
            if isinstance(content, dict) and content.get(CITY_MESSAGE_ID) == message_id:
                event_id = event.get("event_id")
                return event_id if isinstance(event_id, str) else None
        return None

    async def _redacted(self, room: str, event_id: str) -> bool:
        event = await self._matrix.event(room, event_id, user_id=self._names.bot)
        return event is None or "redacted_because" in (event.get("unsigned") or {})
