"""Rules for posting and reading room messages, from any side (city, Matrix, agent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from gateway.core.errors import AppError, not_found, unstorable_input
from gateway.core.events import CityHooks
from gateway.core.ids import new_feed_event_id, new_message_id
from gateway.core.models import Message
from gateway.core.ratelimit import TokenBucket
from gateway.core.storage import Executor
from gateway.core.storage import messages as message_sql
from gateway.core.storage import rooms as room_sql
from gateway.core.storage.messages import NewFeedEvent, NewMessage
from gateway.core.text import clean_text, snippet

Source = Literal["city", "matrix"]
MAX_CLIENT_MSG_ID = 128


@dataclass(frozen=True, slots=True)
class Author:
    """Exactly one of the three identities is set."""

    user_id: str | None = None
    agent_id: str | None = None
    matrix_id: str | None = None
    # Display name from the user's token, passed on to their Matrix ghost.
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class PostResult:
    message: Message
    created: bool  # False when a retry returned the message stored the first time


class MessageService:
    def __init__(
        self,
        db: Executor,
        hooks: CityHooks,
        *,
        max_chars: int,
        matrix_enabled: bool,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._db = db
        self._hooks = hooks
        self._max_chars = max_chars
        self._matrix_enabled = matrix_enabled
        # Messages per city user, REST and WebSocket together (SPEC §12). Matrix and
        # agent authors are not city users and are not counted here.
        self._limiter = limiter

    def check_body(self, body: str) -> str:
        return clean_text(body, field="body", max_chars=self._max_chars)

    async def post(
        self,
        room_id: str,
        author: Author,
        body: str,
        *,
        client_msg_id: str | None = None,
        source: Source = "city",
        matrix_event_id: str | None = None,
        queue_for_matrix: bool | None = None,
        db: Executor | None = None,
    ) -> PostResult:
        """Store a message with its feed event (and outbox row), then announce it.

        `db` lets a caller (the Matrix inbox, Second Me) include the write in its
        own transaction. Then nothing is announced here — the transaction has not
        committed yet — and the caller must call `hooks.emit_message` after commit.
        """
        self.check_body(body)
        if client_msg_id is not None:
            if not 0 < len(client_msg_id) <= MAX_CLIENT_MSG_ID:
                raise AppError(
                    422, "invalid_client_msg_id", "client_msg_id must be 1-128 characters"
                )
            if "\x00" in client_msg_id:
                raise unstorable_input()  # PostgreSQL text cannot hold NUL
        limited = self._limiter is not None and author.user_id is not None and source == "city"
        if limited:
            retry = await self._take_budget(room_id, author, client_msg_id)
            if retry is not None:
                return retry
        if queue_for_matrix is None:
            queue_for_matrix = self._matrix_enabled and source == "city"
        executor = db if db is not None else self._db
        message_id = new_message_id()
        kind = "agent_reply" if author.agent_id else "room_message"
        payload = {
            "body": body,
            "snippet": snippet(body),
            "source": source,
            "message_id": message_id,
        }
        if author.matrix_id:
            payload["author_matrix_id"] = author.matrix_id
        try:
            stored = await message_sql.insert_message(
                executor,
                NewMessage(
                    id=message_id,
                    room_id=room_id,
                    body=body,
                    author_user_id=author.user_id,
                    author_agent_id=author.agent_id,
                    author_matrix_id=author.matrix_id,
                    client_msg_id=client_msg_id,
                    matrix_event_id=matrix_event_id,
                ),
                NewFeedEvent(id=new_feed_event_id(), kind=kind, payload=payload),
                queue_for_matrix,
                author.display_name,
            )
        except asyncpg.ForeignKeyViolationError:
            raise not_found("room_not_found", f"room {room_id!r} does not exist") from None
        if stored is not None:
            if db is None:
                await self._hooks.emit_message(stored)
            return PostResult(stored, created=True)
        existing = await self._existing(executor, author, client_msg_id, matrix_event_id)
        if existing is None:  # pragma: no cover - the conflict row was deleted meanwhile
            raise AppError(409, "conflict", "message conflicted with one that no longer exists")
        if limited:
            await self._refund(author)  # an idempotent retry stores nothing: free
        if existing.room_id != room_id:
            raise AppError(
                409, "client_msg_id_reused", "client_msg_id was already used in another room"
            )
        return PostResult(existing, created=False)

    async def _take_budget(
        self, room_id: str, author: Author, client_msg_id: str | None
    ) -> PostResult | None:
        """One token of the author's message bucket, or 429 `rate_limited`.

        The token is taken before the insert: one EVALSHA (~0.1 ms) on the hot path
        and no extra query. Only a refused post that carries a `client_msg_id` looks
        for the stored message, so a client retrying a message it already sent gets
        it back (None here means: go on and insert) instead of a 429.
        """
        assert self._limiter is not None and author.user_id is not None
        decision = await self._limiter.take(author.user_id)
        if decision.allowed:
            return None
        if client_msg_id is not None:
            existing = await message_sql.get_by_client_msg_id(
                self._db, author.user_id, client_msg_id
            )
            if existing is not None and existing.room_id == room_id:
                return PostResult(existing, created=False)
        raise decision.error(
            f"too many messages: at most {self._limiter.rate_per_second:g} per second"
            f" (bursts of {self._limiter.burst}); retry after"
            f" {decision.retry_after_header} s"
        )

    async def _refund(self, author: Author) -> None:
        assert self._limiter is not None and author.user_id is not None
        await self._limiter.refund(author.user_id)

    async def _existing(
        self,
        db: Executor,
        author: Author,
        client_msg_id: str | None,
        matrix_event_id: str | None,
    ) -> Message | None:
        if matrix_event_id is not None:
            found = await message_sql.get_by_matrix_event_id(db, matrix_event_id)
            if found is not None:
                return found
        if client_msg_id is not None and author.user_id is not None:
            return await message_sql.get_by_client_msg_id(db, author.user_id, client_msg_id)
        return None

    async def history(self, room_id: str, before: str | None, limit: int) -> list[Message]:
        before_seq: int | None = None
        if before is not None:
            before_seq = await message_sql.seq_of(self._db, room_id, before)
            if before_seq is None:
                if await room_sql.get_room(self._db, room_id) is None:
                    raise not_found("room_not_found", f"room {room_id!r} does not exist")
                raise not_found("message_not_found", f"message {before!r} is not in this room")
        page = await message_sql.latest_messages(self._db, room_id, limit, before_seq)
        if not page and before_seq is None and await room_sql.get_room(self._db, room_id) is None:
            raise not_found("room_not_found", f"room {room_id!r} does not exist")
        return page
