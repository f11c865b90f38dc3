"""Matrix → City: the idempotent inbox of events Synapse pushes to the appservice.

`receive` stores a transaction's events keyed by event id and commits before the
route answers 200, so a crash makes Synapse re-send and the key makes that harmless
(also when Synapse restarts its txn counter: we never dedupe on txnId). Each event
is then processed once: claimed with `FOR UPDATE SKIP LOCKED`, turned into a city
message in the same transaction that marks it done, announced after commit. One bad
event is logged and recorded; it never fails the batch.

What Matrix may change in the city (SPEC §12): a redaction removes a city message
only if its sender is the message's Matrix author or has the room's `redact` power
level; an edit applies only from the original sender; both only from the message's
own room. Anything else is dropped and counted in `city_matrix_events_ignored_total`.

City data changes only through gateway.core's MessageService (post, edit, delete,
record_matrix_event_id), inside the event's transaction; after commit the inbox
announces what changed (`message_posted` / `message_edited` / `message_deleted`),
so sockets and NATS hear of Matrix changes like any city change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
from prometheus_client import Counter

from bridge import inbox_reactions, metrics, render, replies, storage
from bridge.naming import Names
from bridge.outbox import CITY_MESSAGE_ID
from bridge.power_levels import POWER_LEVELS_EVENT, PowerLevels
from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.media import attachment_from_content
from gateway.core.messages import Author, MessageService
from gateway.core.models import Message, ReactionChange
from gateway.core.reactions import ReactionService
from gateway.core.storage import rooms as room_sql

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5

PROCESSED = Counter(
    "city_matrix_inbox_events", "Matrix events processed by this process", ["state"]
)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a real Matrix user sent into a room one of our users is in."""

    event_id: str
    matrix_room_id: str
    sender: str
    msgtype: str
    body: str  # as stored in the city (rendered for media, emotes)
    content: dict[str, Any]
    city_room_id: str | None  # None: not a bridged room (a DM to Second Me, say)
    message: Message | None  # the city copy, when the room is bridged


InboundListener = Callable[[InboundMessage], Awaitable[None]]
EventListener = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class _Outcome:
    state: str  # done | dropped
    detail: str | None = None
    posted: Message | None = None
    edited: Message | None = None
    deleted: Message | None = None
    inbound: InboundMessage | None = None
    reaction: ReactionChange | None = None


@dataclass
class InboxListeners:
    """Called after commit, once per event cluster-wide (on the process that processed it)."""

    messages: list[InboundListener] = field(default_factory=list)
    events: list[EventListener] = field(default_factory=list)


def _ignored(reason: str, detail: str) -> _Outcome:
    metrics.MATRIX_EVENTS_IGNORED.labels(reason).inc()
    return _Outcome("dropped", f"ignored ({reason}): {detail}")


class Inbox:
    def __init__(
        self,
        db: asyncpg.Pool,
        messages: MessageService,
        hooks: CityHooks,
        names: Names,
        power_levels: PowerLevels,
        *,
        max_chars: int,
        reactions: ReactionService | None = None,
    ) -> None:
        self._db = db
        self._messages = messages
        self._reactions = reactions  # None: reactions are not bridged (tests of the rest)
        self._hooks = hooks
        self._names = names
        self._power = power_levels
        self._max_chars = max_chars
        self.listeners = InboxListeners()

    # --- the transaction route -----------------------------------------------------
    async def receive(self, events: list[Any]) -> int:
        """Store a transaction's events (committed on return), then process them."""
        stored: list[storage.InboxEvent] = []
        seen: set[str] = set()
        for raw in events:
            event = _keyable(raw)
            if event is None:
                log.warning("ignoring an event without an event_id: %.200r", raw)
                continue
            if event.event_id not in seen:
                seen.add(event.event_id)
                stored.append(event)
            if event.type == POWER_LEVELS_EVENT and event.room_id is not None:
                # Before anything of this batch is processed: a redaction right after a
                # demotion is judged by the new levels.
                self._power.invalidate(event.room_id)
        async with self._db.acquire() as conn, conn.transaction():
            await storage.store_events(conn, stored)
        for event in stored:
            await self.process(event.event_id)
        return len(stored)

    async def process(self, event_id: str) -> None:
        """Process one stored event if still pending; never raises."""
        try:
            async with self._db.acquire() as conn, conn.transaction():
                event = await storage.claim_pending(conn, event_id)
                if event is None:
                    return  # done already, or another process is on it
                outcome = await self._handle(conn, event)
                await storage.finish_event(conn, event_id, outcome.state, outcome.detail)
        except Exception as exc:
            log.exception("processing Matrix event %s failed", event_id)
            try:
                await storage.record_failure(
                    self._db, event_id, f"{type(exc).__name__}: {exc}", MAX_ATTEMPTS
                )
            except Exception:
                log.exception("recording the failure of %s failed", event_id)
            return
        PROCESSED.labels(outcome.state).inc()
        if outcome.state == "dropped":
            log.debug("Matrix event %s dropped: %s", event_id, outcome.detail)
        # After commit, like every city change: sockets and NATS hear of it.
        if outcome.posted is not None:
            await self._hooks.emit_message(outcome.posted)
        if outcome.edited is not None:
            await self._hooks.emit_message_edited(outcome.edited)
        if outcome.deleted is not None:
            await self._hooks.emit_message_deleted(outcome.deleted)
        if outcome.reaction is not None:
            await self._hooks.emit_reaction(outcome.reaction)
        for listener in self.listeners.events:
            await _safely(listener, event)
        if outcome.inbound is not None:
            for message_listener in self.listeners.messages:
                await _safely(message_listener, outcome.inbound)

    async def retry_stale(self, older_than_seconds: float = 10, limit: int = 100) -> int:
        """Process events left pending (a crash or a failure after they were stored)."""
        ids = await storage.stale_pending(self._db, older_than_seconds, limit)
        for event_id in ids:
            await self.process(event_id)
        return len(ids)

    async def run_retries(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.retry_stale()
            except Exception:
                log.exception("inbox retry sweep failed")

    # --- rules -----------------------------------------------------------------------
    async def _handle(self, conn: asyncpg.Connection, event: dict[str, Any]) -> _Outcome:
        sender = event.get("sender")
        room_id = event.get("room_id")
        kind = event.get("type")
        content = event.get("content")
        if (
            not isinstance(sender, str)
            or not isinstance(room_id, str)
            or not isinstance(content, dict)
        ):
            return _Outcome("dropped", "malformed: sender, room_id or content missing")
        if self._names.is_ours(sender):
            return await self._echo(conn, event, content)
        if kind == "m.room.message":
            return await self._message(conn, event, sender, room_id, content)
        if kind == "m.room.redaction":
            return await self._redaction(conn, event, sender, room_id, content)
        if kind == "m.reaction" and self._reactions is not None:
            done = await inbox_reactions.annotation(
                conn, self._reactions, self._messages, event, sender, room_id, content
            )
            return _Outcome(done.state, done.detail, reaction=done.change)
        return _Outcome("dropped", f"not bridged: {kind}")

    async def _echo(
        self, conn: asyncpg.Connection, event: dict[str, Any], content: dict[str, Any]
    ) -> _Outcome:
        """Our own event coming back: learn its event id if the send's answer was lost."""
        message_id = content.get(CITY_MESSAGE_ID)
        event_id = event["event_id"]
        if event.get("type") == "m.room.message" and isinstance(message_id, str):
            await self._messages.record_matrix_event_id(
                message_id, event_id, only_if_missing=True, db=conn
            )
        return _Outcome("dropped", "echo")

    async def _message(
        self,
        conn: asyncpg.Connection,
        event: dict[str, Any],
        sender: str,
        matrix_room_id: str,
        content: dict[str, Any],
    ) -> _Outcome:
        relates = content.get("m.relates_to")
        if isinstance(relates, dict) and relates.get("rel_type") == "m.replace":
            return await self._edit(conn, sender, matrix_room_id, content, relates)
        body = render.message_body(content, self._max_chars)
        if body is None:
            return _Outcome("dropped", "unsupported or empty message content")
        msgtype = str(content.get("msgtype"))
        room = await room_sql.get_room_by_matrix_id(conn, matrix_room_id)
        inbound = InboundMessage(
            event_id=event["event_id"],
            matrix_room_id=matrix_room_id,
            sender=sender,
            msgtype=msgtype,
            body=body,
            content=content,
            city_room_id=room.id if room else None,
            message=None,
        )
        if room is None:
            return _Outcome("dropped", "room not bridged", inbound=inbound)
        try:
            result = await self._messages.post(
                room.id,
                Author(matrix_id=sender),
                body,
                source="matrix",
                matrix_event_id=event["event_id"],
                reply_to=await replies.city_reply_to(self._messages, conn, content, room.id),
                attachment=attachment_from_content(content),
                db=conn,
            )
        except AppError as exc:
            return _Outcome("dropped", f"rejected: {exc.code}: {exc.message}")
        inbound = replace(inbound, message=result.message)
        return _Outcome(
            "done",
            None,
            posted=result.message if result.created else None,
            inbound=inbound if result.created else None,
        )

    async def _edit(
        self,
        conn: asyncpg.Connection,
        sender: str,
        matrix_room_id: str,
        content: dict[str, Any],
        relates: dict[str, Any],
    ) -> _Outcome:
        target_id = relates.get("event_id")
        new_content = content.get("m.new_content")
        if not isinstance(target_id, str) or not isinstance(new_content, dict):
            return _Outcome("dropped", "malformed edit")
        target = await self._messages.find_by_matrix_event(target_id, db=conn)
        if target is None:
            return _Outcome("dropped", "edit of a message we do not have")
        if not await _in_room(conn, target, matrix_room_id):
            return _ignored("edit_other_room", f"{sender} edits {target.id} from another room")
        # Only the original sender: a city message's sender is our ghost, so nobody
        # on Matrix may edit it (the city edits it itself).
        if target.author_matrix_id != sender:
            return _ignored("edit_not_author", f"{sender} edits {target.id}")
        body = render.message_body(new_content, self._max_chars)
        if body is None:
            return _Outcome("dropped", "edit with unsupported content")
        try:
            edited = await self._messages.edit(target.id, body, db=conn)
        except AppError as exc:
            return _Outcome("dropped", f"rejected: {exc.code}: {exc.message}")
        if edited is not None and self._reactions is not None:
            # The frame shows the message whole, its reactions included.
            (edited,) = await self._reactions.attach([edited], None, db=conn)
        return _Outcome("done", f"edited {target.id}", edited=edited)

    async def _redaction(
        self,
        conn: asyncpg.Connection,
        event: dict[str, Any],
        sender: str,
        matrix_room_id: str,
        content: dict[str, Any],
    ) -> _Outcome:
        # Room versions up to 10 put `redacts` at the top level, v11 in the content.
        target_id = event.get("redacts") or content.get("redacts")
        if not isinstance(target_id, str):
            return _Outcome("dropped", "malformed redaction")
        target = await self._messages.find_by_matrix_event(target_id, db=conn)
        if target is None and self._reactions is not None:
            removed = await inbox_reactions.redaction(
                conn, self._reactions, self._power, target_id, sender, matrix_room_id
            )
            if removed is not None:
                return _Outcome(removed.state, removed.detail, reaction=removed.change)
        if target is None:
            return _Outcome("dropped", "redaction of a message we do not have")
        if not await _in_room(conn, target, matrix_room_id):
            return _ignored(
                "redaction_other_room", f"{sender} redacts {target.id} from another room"
            )
        # Synapse passes on redactions from anyone over federation (it checks them only
        # when serving the event), so the author or the room's `redact` level decides.
        # A city message's Matrix sender is our ghost: only a privileged user may.
        if target.author_matrix_id != sender and not await self._power.can_redact(
            matrix_room_id, sender
        ):
            return _ignored("redaction_not_permitted", f"{sender} redacts {target.id}")
        deleted = await self._messages.delete(target.id, db=conn)
        await storage.forget_outbox_message(conn, target.id)
        return _Outcome("done", f"removed {target.id} (redacted by {sender})", deleted=deleted)


async def _in_room(conn: asyncpg.Connection, target: Message, matrix_room_id: str) -> bool:
    """The city message lives in the Matrix room the event was sent in."""
    room = await room_sql.get_room_by_matrix_id(conn, matrix_room_id)
    return room is not None and room.id == target.room_id


def _keyable(raw: Any) -> storage.InboxEvent | None:
    if not isinstance(raw, dict):
        return None
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 255:
        return None
    if "\x00" in event_id:
        return None

    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) and "\x00" not in value else None

    return storage.InboxEvent(
        event_id=event_id,
        room_id=text("room_id"),
        sender=text("sender"),
        type=text("type"),
        event=_strip_nul(raw),
    )


def _strip_nul(value: Any) -> Any:
    """PostgreSQL's jsonb cannot hold U+0000; Matrix JSON may."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


async def _safely(listener: Callable[..., Awaitable[None]], *args: Any) -> None:
    try:
        await listener(*args)
    except Exception:
        log.exception("bridge listener %r failed", listener)
