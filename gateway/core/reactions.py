"""Rules for reactions (SPEC §13): one per reactor, key and message, from either side.

A city user's reaction (REST PUT / DELETE) is stored together with its outbox row
for Matrix in one statement (gateway.core.ports.MessageOutbox), then announced
(`reaction_changed` → `room.reaction` frames). A Matrix user's reaction arrives
through the bridge's inbox, inside its transaction, and is announced after commit
by the bridge. Messages carry `reactions: [{key, count, me}]`, computed for a whole
page in one aggregate query (`attach`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import asyncpg

from gateway.core.errors import AppError, not_found
from gateway.core.events import CityHooks
from gateway.core.models import Message, ReactionChange
from gateway.core.ports import MessageOutbox
from gateway.core.ratelimit import TokenBucket
from gateway.core.storage import Executor
from gateway.core.storage import messages as message_sql
from gateway.core.storage import reactions as reaction_sql
from gateway.core.storage import rooms as room_sql
from gateway.core.storage.reactions import CHANGED, StoredReaction

MAX_KEY_CHARS = 64
# Control characters (NUL included) and lone surrogates; emoji ZWJ sequences and
# variation selectors (Cf, Mn) are allowed.
_BAD_CATEGORIES = frozenset({"Cc", "Cs"})


def check_key(key: str) -> str:
    """1-64 characters, an emoji or short text, no control characters (422 otherwise)."""
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise AppError(
            422, "invalid_reaction_key", f"a reaction key is 1-{MAX_KEY_CHARS} characters"
        )
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in key) or not key.strip():
        raise AppError(
            422, "invalid_reaction_key", "a reaction key must be visible text without controls"
        )
    return key


class ReactionService:
    def __init__(
        self,
        db: Executor,
        hooks: CityHooks,
        *,
        outbox: MessageOutbox | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._db = db
        self._hooks = hooks
        queue_add = outbox.queue_change_statement("react", CHANGED) if outbox else None
        queue_remove = outbox.queue_change_statement("unreact", CHANGED) if outbox else None
        self._city_add = reaction_sql.add_statement(queue_add)
        self._city_remove = reaction_sql.remove_statement(queue_remove)
        self._plain_add = reaction_sql.add_statement()
        # City users' reactions count against their message budget (SPEC §12): each
        # one is also a Matrix event.
        self._limiter = limiter

    # --- a city user's own reaction (REST) ---------------------------------------------
    async def react(self, room_id: str, message_id: str, key: str, user_id: str) -> Message:
        """Add the caller's reaction (a second time changes nothing); the message after."""
        check_key(key)
        await self._take_budget(user_id)
        async with _transaction(self._db) as conn:
            stored = await reaction_sql.add(
                conn,
                self._city_add,
                room_id,
                message_id,
                key,
                user_id=user_id,
                matrix_user_id=None,
                matrix_event_id=None,
            )
            change = await self._change(conn, stored, added=True) if stored else None
        if change is not None:
            await self._hooks.emit_reaction(change)
        return await self._message(room_id, message_id, user_id)

    async def unreact(self, room_id: str, message_id: str, key: str, user_id: str) -> Message:
        """Remove the caller's reaction (none there: nothing changes); the message after."""
        check_key(key)
        await self._message(room_id, message_id, user_id)  # 404s before anything else
        await self._take_budget(user_id)
        async with _transaction(self._db) as conn:
            stored = await reaction_sql.remove(conn, self._city_remove, message_id, key, user_id)
            change = await self._change(conn, stored, added=False) if stored else None
        if change is not None:
            await self._hooks.emit_reaction(change)
        return await self._message(room_id, message_id, user_id)

    # --- a Matrix user's reaction (the bridge's inbox, in its transaction) -------------
    async def add_from_matrix(
        self, db: Executor, message: Message, key: str, matrix_user_id: str, event_id: str
    ) -> ReactionChange | None:
        """None if that user already has that reaction there. The caller announces the
        change (`hooks.emit_reaction`) after commit."""
        check_key(key)
        stored = await reaction_sql.add(
            db,
            self._plain_add,
            message.room_id,
            message.id,
            key,
            user_id=None,
            matrix_user_id=matrix_user_id,
            matrix_event_id=event_id,
        )
        return await self._change(db, stored, added=True) if stored else None

    async def find_by_matrix_event(self, db: Executor, event_id: str) -> StoredReaction | None:
        return await reaction_sql.get_by_matrix_event(db, event_id)

    async def remove_by_matrix_event(self, db: Executor, event_id: str) -> ReactionChange | None:
        """A redaction of the reaction's event (whoever may redact: the caller's rule)."""
        stored = await reaction_sql.remove_by_matrix_event(db, event_id)
        return await self._change(db, stored, added=False) if stored else None

    # --- for the outbox ------------------------------------------------------------------
    async def exists(self, reaction_id: int, *, db: Executor | None = None) -> bool:
        return await reaction_sql.exists(db if db is not None else self._db, reaction_id)

    async def record_matrix_event_id(
        self, reaction_id: int, event_id: str, *, db: Executor | None = None
    ) -> bool:
        """The ghost's m.reaction for a city reaction was sent (not announced)."""
        return await reaction_sql.set_matrix_event_id(
            db if db is not None else self._db, reaction_id, event_id
        )

    # --- reading -------------------------------------------------------------------------
    async def attach(
        self, messages: list[Message], viewer: str | None, *, db: Executor | None = None
    ) -> list[Message]:
        """The messages with their `reactions` (one query for all of them)."""
        if not messages:
            return messages
        found = await reaction_sql.summaries(
            db if db is not None else self._db, [m.id for m in messages], viewer
        )
        return [replace(m, reactions=found[m.id]) if m.id in found else m for m in messages]

    async def _message(self, room_id: str, message_id: str, viewer: str | None) -> Message:
        message = await message_sql.get_message(self._db, message_id)
        if message is None or message.room_id != room_id:
            if await room_sql.get_room(self._db, room_id) is None:
                raise not_found("room_not_found", f"room {room_id!r} does not exist")
            raise not_found("message_not_found", f"message {message_id!r} is not in this room")
        (message,) = await self.attach([message], viewer)
        return message

    async def _change(self, db: Executor, stored: StoredReaction, *, added: bool) -> ReactionChange:
        return ReactionChange(
            room_id=stored.room_id,
            message_id=stored.message_id,
            key=stored.key,
            count=await reaction_sql.count(db, stored.message_id, stored.key),
            added=added,
            user_id=stored.user_id,
            matrix_user_id=stored.matrix_user_id,
        )

    async def _take_budget(self, user_id: str) -> None:
        if self._limiter is None:
            return
        decision = await self._limiter.take(user_id)
        if not decision.allowed:
            raise decision.error(
                f"too many messages and reactions: at most {self._limiter.rate_per_second:g}"
                f" per second; retry after {decision.retry_after_header} s"
            )


@asynccontextmanager
async def _transaction(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction, from the pool (or the connection given)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
