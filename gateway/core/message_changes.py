"""A city user edits or deletes their own message (SPEC §13: PATCH / DELETE).

The same changes as Matrix makes through MessageService.edit / delete (same body
rules, same feed update, same `message_edited` / `message_deleted` announcements
after commit), plus what only the city side needs: the author check (403), the
per-user message budget for edits (SPEC §12), and the change's row in the outbox
(gateway.core.ports.MessageOutbox), in the statement that makes the change, so the
bridge sends it to Matrix — `m.replace` / a redaction as the author's ghost — once,
after the message itself.

A delete removes the message (and its feed event and reactions) from the city, as
a redaction from Matrix does: no tombstone (docs/matrix.md says why).
"""

from __future__ import annotations

from gateway.core.errors import AppError, forbidden, not_found
from gateway.core.events import CityHooks
from gateway.core.models import Message
from gateway.core.ports import MessageOutbox
from gateway.core.ratelimit import TokenBucket
from gateway.core.reactions import ReactionService
from gateway.core.storage import Executor
from gateway.core.storage import message_changes as change_sql
from gateway.core.storage import messages as message_sql
from gateway.core.storage import rooms as room_sql
from gateway.core.text import clean_text, snippet


class CityMessageChanges:
    def __init__(
        self,
        db: Executor,
        hooks: CityHooks,
        reactions: ReactionService,
        *,
        max_chars: int,
        outbox: MessageOutbox | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._db = db
        self._hooks = hooks
        self._reactions = reactions
        self._max_chars = max_chars
        self._limiter = limiter
        self._edit = change_sql.edit_statement(
            outbox.queue_change_statement("edit", change_sql.EDITED) if outbox else None
        )
        self._delete = change_sql.delete_statement(
            outbox.queue_change_statement("redact", change_sql.DELETED) if outbox else None
        )

    async def edit(self, room_id: str, message_id: str, user_id: str, body: str) -> Message:
        """Replace the body of the caller's message; the message after (`me` = caller).

        The same body again changes nothing and sends nothing.
        """
        clean_text(body, field="body", max_chars=self._max_chars)
        current = await self._own(room_id, message_id, user_id, "edit")
        if self._limiter is not None:
            decision = await self._limiter.take(user_id)
            if not decision.allowed:
                raise decision.error(
                    f"too many messages: at most {self._limiter.rate_per_second:g} per second"
                    f" (bursts of {self._limiter.burst}); retry after"
                    f" {decision.retry_after_header} s"
                )
        if body == current.body:
            (unchanged,) = await self._reactions.attach([current], user_id)
            return unchanged
        edited = await change_sql.edit_own(
            self._db, self._edit, room_id, message_id, user_id, body, snippet(body)
        )
        if edited is None:  # deleted meanwhile
            raise _message_not_found(message_id)
        (announced,) = await self._reactions.attach([edited], None)
        await self._hooks.emit_message_edited(announced)
        (answer,) = await self._reactions.attach([edited], user_id)
        return answer

    async def delete(self, room_id: str, message_id: str, user_id: str) -> None:
        """Remove the caller's message, its feed event and its reactions."""
        await self._own(room_id, message_id, user_id, "delete")
        deleted = await change_sql.delete_own(self._db, self._delete, room_id, message_id, user_id)
        if deleted is None:  # deleted meanwhile
            raise _message_not_found(message_id)
        await self._hooks.emit_message_deleted(deleted)

    async def _own(self, room_id: str, message_id: str, user_id: str, what: str) -> Message:
        if not 0 < len(message_id) <= 128 or "\x00" in message_id:
            raise _message_not_found(message_id[:128])
        message = await message_sql.get_message(self._db, message_id)
        if message is None or message.room_id != room_id:
            if await room_sql.get_room(self._db, room_id) is None:
                raise not_found("room_not_found", f"room {room_id!r} does not exist")
            raise _message_not_found(message_id)
        if message.author_user_id != user_id:
            raise forbidden(f"only the author may {what} this message")
        return message


def _message_not_found(message_id: str) -> AppError:
    return not_found("message_not_found", f"message {message_id!r} is not in this room")
