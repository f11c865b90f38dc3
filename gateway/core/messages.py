"""Rules for posting, editing, deleting and reading room messages, from any side.

City users, agents and the Matrix bridge all change messages here, and every change
is announced after commit (`message_posted`, `message_edited`, `message_deleted`),
so sockets and NATS hear of it whichever side made it.

The outbox (gateway.core.ports.MessageOutbox; the bridge's outbox table) is the
adapter's SQL run as one more CTE of the insert statement, not a call the core makes
with the connection inside a transaction. Measured on the insert alone (asyncpg, 20
concurrent connections, 3,000 inserts x 5 runs, shared 2-core machine): the one
statement with the adapter's CTE costs ~0.47 ms per message, the same as the single
statement before ownership was split (~0.42-0.44 ms, within noise), while BEGIN +
insert + the adapter's insert + COMMIT costs ~0.62 ms (~1.35x): three more round
trips on the POST path that is benchmarked at ~1,300 messages/s. The price is a
narrow contract: the core names the stored row's CTE and the author name's
placeholder, the adapter returns a statement over them; the core's SQL never names
the adapter's table, and with no bridge the port is None and the statement has no
queue at all.

`matrix_event_id` stays a column of `city_room_messages` owned by the core and is
written only here (`record_matrix_event_id`): it is the unique retry key of a Matrix
author's post (its ON CONFLICT is what makes a re-delivered event harmless in the
same single statement) and Second Me resolves replies by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

from gateway.core.errors import AppError, not_found, unstorable_input
from gateway.core.events import CityHooks
from gateway.core.ids import new_feed_event_id, new_message_id
from gateway.core.models import Attachment, Message
from gateway.core.ports import MessageOutbox
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
        outbox: MessageOutbox | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._db = db
        self._hooks = hooks
        self._max_chars = max_chars
        # City-authored messages are queued for the outbox in their insert statement.
        self._queued_insert = (
            message_sql.insert_statement(
                outbox.queue_statement(message_sql.STORED, message_sql.AUTHOR_NAME)
            )
            if outbox is not None
            else None
        )
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
        reply_to: str | None = None,
        attachment: Attachment | None = None,
        db: Executor | None = None,
    ) -> PostResult:
        """Store a message with its feed event (and outbox row), then announce it.

        Messages of source "city" go to the outbox, if there is one. `db` lets a
        caller (the Matrix inbox, Second Me) include the write in its own
        transaction. Then nothing is announced here — the transaction has not
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
        executor = db if db is not None else self._db
        if reply_to is not None:
            await self._check_reply_to(executor, room_id, reply_to)
        limited = self._limiter is not None and author.user_id is not None and source == "city"
        if limited:
            retry = await self._take_budget(room_id, author, client_msg_id)
            if retry is not None:
                return retry
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
                    reply_to=reply_to,
                    attachment=attachment,
                ),
                NewFeedEvent(id=new_feed_event_id(), kind=kind, payload=payload),
                queued=self._queued_insert if source == "city" else None,
                author_name=author.display_name,
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

    async def edit(
        self, message_id: str, body: str, *, db: Executor | None = None
    ) -> Message | None:
        """Replace a message's body (its feed event follows); None if it is gone.

        Who may edit is the caller's rule (the author, as each side knows them). With
        `db` (the caller's transaction) the caller announces with
        `hooks.emit_message_edited` after commit, as for `post`.
        """
        self.check_body(body)
        edited = await message_sql.edit_message(
            db if db is not None else self._db, message_id, body, snippet(body)
        )
        if edited is not None and db is None:
            await self._hooks.emit_message_edited(edited)
        return edited

    async def delete(self, message_id: str, *, db: Executor | None = None) -> Message | None:
        """Remove a message and its feed event; the message as it was, or None if gone.

        With `db` the caller announces with `hooks.emit_message_deleted` after commit.
        """
        deleted = await message_sql.delete_message(db if db is not None else self._db, message_id)
        if deleted is not None and db is None:
            await self._hooks.emit_message_deleted(deleted)
        return deleted

    async def _check_reply_to(self, db: Executor, room_id: str, reply_to: str) -> None:
        """`reply_to` names a message of this room: 422 `invalid_reply_to` when it cannot
        be an id, 404 `reply_to_not_found` when no such message is in the room.

        One primary-key lookup, only for replies: posts without `reply_to` pay nothing.
        """
        if not 0 < len(reply_to) <= MAX_CLIENT_MSG_ID or "\x00" in reply_to:
            raise AppError(422, "invalid_reply_to", "reply_to must be a message id")
        found_in = await message_sql.room_of(db, reply_to)
        if found_in == room_id:
            return
        if found_in is None and await room_sql.get_room(db, room_id) is None:
            raise not_found("room_not_found", f"room {room_id!r} does not exist")
        raise not_found("reply_to_not_found", f"message {reply_to!r} is not in this room")

    async def get(self, message_id: str, *, db: Executor | None = None) -> Message | None:
        return await message_sql.get_message(db if db is not None else self._db, message_id)

    async def find_by_matrix_event(
        self, event_id: str, *, db: Executor | None = None
    ) -> Message | None:
        """The city message whose Matrix copy (either direction) is `event_id`."""
        return await message_sql.get_by_matrix_event_id(
            db if db is not None else self._db, event_id
        )

    async def record_matrix_event_id(
        self,
        message_id: str,
        event_id: str,
        *,
        only_if_missing: bool = False,
        db: Executor | None = None,
    ) -> bool:
        """Remember the Matrix copy of a city message (the outbox sent it, or its echo
        came back first: `only_if_missing` keeps an id already known). Not announced:
        clients never see Matrix event ids."""
        return await message_sql.set_matrix_event_id(
            db if db is not None else self._db,
            message_id,
            event_id,
            only_if_missing=only_if_missing,
        )

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
