"""City → Matrix: drain `matrix_outbox` per room, in order, from any number of processes.

A room is drained by one worker at a time cluster-wide: the worker locks the room's
*head* row (`FOR UPDATE SKIP LOCKED`) in a transaction that stays open while the
message is sent, then records the event id and deletes the row in that transaction.
Another process that tries the room finds the head locked and moves on, so rooms go
in parallel and each room strictly in order. A crash mid-send releases the lock; the
next sender retries with the same txnId (= city message id), which Synapse answers
with the first event id — unless Synapse restarted meanwhile and forgot it, which is
why a send that may have reached Synapse is marked `uncertain` and the room is
searched for the message id (carried in the event content) before sending again.

"Head" means the row of the room's lowest message `seq`, so Matrix shows a room's
messages in the order of the city history; before reading it, the worker waits for
the room's inserts that already drew a seq to commit (migrations/0004_room_order.sql).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from prometheus_client import Counter

from bridge import replies, storage
from bridge.ghosts import Ghosts
from bridge.matrix import MatrixClient, MatrixError, MatrixUnavailable
from bridge.naming import Names
from bridge.outbox_ops import ChangeSender
from bridge.outbox_queue import learn_target_event
from bridge.rooms import RoomMapper
from gateway.core.messages import MessageService
from gateway.core.models import Message
from gateway.core.reactions import ReactionService
from gateway.infra.backoff import delay as retry_delay

log = logging.getLogger(__name__)

# Content key carrying the city message id, so our own events are recognisable.
CITY_MESSAGE_ID = "city.message_id"
CITY_ROOM_ID = "city.room_id"
_UNAVAILABLE = "unavailable: "
# Attempts before a message Synapse keeps refusing (4xx other than 429) is dropped.
_REFUSED_ATTEMPTS = 6

SENT = Counter("city_matrix_outbox_sent", "City messages delivered to Matrix by this process")
RETRIED = Counter("city_matrix_outbox_retries", "Outbox sends that failed and were rescheduled")


class _Retry(Exception):
    def __init__(self, error: str, delay: float | None, uncertain: bool) -> None:
        super().__init__(error)
        self.error = error
        self.delay = delay  # None: use the back-off schedule
        self.uncertain = uncertain


def backoff(attempts: int, cap: float) -> float:
    """0.5 s doubling per attempt up to `cap`, jittered so rooms do not retry in step.

    At least half the step: a failing Synapse is not retried in a burst.
    """
    return retry_delay(attempts, base=0.5, cap=cap, floor=0.5)


def message_content(message: Message) -> dict[str, Any]:
    return {
        # Agents (Second Me) speak as bots do on Matrix: notices are never answered
        # by other bots, which keeps two bots from talking to each other forever.
        "msgtype": "m.notice" if message.author_agent_id else "m.text",
        "body": message.body,
        CITY_MESSAGE_ID: message.id,
        CITY_ROOM_ID: message.room_id,
    }


class OutboxSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        matrix: MatrixClient,
        names: Names,
        rooms: RoomMapper,
        ghosts: Ghosts,
        messages: MessageService,
        reactions: ReactionService,
        *,
        concurrency: int,
        poll_seconds: float,
        retry_max_seconds: float,
        gate: Callable[[], bool],
        on_recovered: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._matrix = matrix
        self._names = names
        self._rooms = rooms
        self._ghosts = ghosts
        self._messages = messages  # records the event id: the bridge never writes city tables
        # Edits, redactions and reactions of city users (bridge/outbox_ops.py).
        self.changes = ChangeSender(matrix, names, rooms, ghosts, reactions)
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._retry_max = retry_max_seconds
        self._gate = gate  # False until start-up has reached Synapse
        self._on_recovered = on_recovered
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._synapse_down = False
        self.sent = 0  # events delivered by this process (for tests and metrics)

    def nudge(self, room_id: str | None = None) -> None:
        """Something may be due: a message was posted here (in `room_id`), a worker ended.

        A room named by a local post is started at once, without the dispatcher's
        query: that is the latency path.
        """
        if (
            room_id is not None
            and self._gate()
            and not self._synapse_down
            and room_id not in self._active
            and len(self._active) < self._concurrency
        ):
            self._start(room_id)
        else:
            self._wake.set()

    def _start(self, room_id: str) -> None:
        task = asyncio.create_task(self._drain(room_id), name=f"outbox:{room_id}")
        self._active[room_id] = task

    async def run(self) -> None:
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                except TimeoutError:
                    pass
                self._wake.clear()
                if not self._gate():
                    continue
                try:
                    await self._dispatch()
                except Exception:
                    log.exception("outbox dispatch failed")
        finally:
            for task in list(self._active.values()):
                task.cancel()
            await asyncio.gather(*self._active.values(), return_exceptions=True)

    async def _dispatch(self) -> None:
        if self._synapse_down:
            if not await self._synapse_back():
                return
        free = self._concurrency - len(self._active)
        if free <= 0:
            return
        for room_id in await storage.due_rooms(self._pool, free + len(self._active)):
            if room_id in self._active:
                continue
            if len(self._active) >= self._concurrency:
                break
            self._start(room_id)

    async def _synapse_back(self) -> bool:
        """While Synapse is unreachable, probe it instead of failing every room.

        Once it answers, rows that backed off because of the outage are due at once:
        messages posted during a one-minute outage arrive within a poll interval of
        Synapse's return, not after each room's back-off has run out.
        """
        try:
            await self._matrix.versions(timeout=2)
        except (MatrixUnavailable, MatrixError):
            return False
        self._synapse_down = False
        await self._pool.execute(
            """update matrix_outbox set next_attempt_at = now()
               where next_attempt_at > now() and last_error like $1""",
            _UNAVAILABLE + "%",
        )
        log.info("Synapse reachable again; resuming the outbox")
        if self._on_recovered is not None:
            await self._on_recovered()
        return True

    async def _drain(self, room_id: str) -> None:
        try:
            while await self._send_head(room_id):
                pass
        except Exception:
            log.exception("outbox worker for %s failed", room_id)
        finally:
            self._active.pop(room_id, None)
            self._wake.set()

    async def _send_head(self, room_id: str) -> bool:
        """Send the room's next message (by room seq); True if the room may have more."""
        async with self._pool.acquire() as conn:
            # Outside the transaction below: held while sending, it would stop posts.
            await storage.wait_for_room_inserts(conn, room_id)
            async with conn.transaction():
                return await self._send_locked_head(conn, room_id)

    async def _send_locked_head(self, conn: asyncpg.Connection, room_id: str) -> bool:
        head = await storage.lock_head(conn, room_id)
        if head is None or not head.due:
            return False
        try:
            if head.kind == "message":
                event_id = await self._deliver(conn, head)
            else:
                event_id = None
                await self._deliver_change(conn, head)
        except _Retry as retry:
            delay = (
                retry.delay if retry.delay is not None else backoff(head.attempts, self._retry_max)
            )
            log.warning(
                "outbox %s (%s) attempt %d failed, retrying in %.1fs: %s",
                head.message_id,
                room_id,
                head.attempts + 1,
                delay,
                retry.error,
            )
            await storage.retry_outbox_row(conn, head.id, delay, retry.error, retry.uncertain)
            return False
        await storage.finish_outbox_row(conn, head.id)
        if event_id is not None:
            await self._messages.record_matrix_event_id(head.message_id, event_id, db=conn)
            # After the city row: a redaction queued meanwhile learns the event id.
            await learn_target_event(conn, message_id=head.message_id, event_id=event_id)
        return True

    def _retry_unless_refused(
        self, exc: MatrixUnavailable | MatrixError, head: storage.OutboxRow
    ) -> None:
        """Raise `_Retry` when Synapse is unavailable, the error is transient, or it is
        one of the first few refusals (a room that another process is still creating
        refuses joins until its join rule is set); return for a refusal to give up on."""
        if isinstance(exc, MatrixUnavailable):
            self._synapse_down = True
            raise _Retry(_UNAVAILABLE + str(exc), None, exc.maybe_applied) from None
        if exc.transient or head.attempts + 1 < _REFUSED_ATTEMPTS:
            delay = None
            if exc.retry_after_ms is not None:
                delay = exc.retry_after_ms / 1000 * random.uniform(1.0, 1.2)
            raise _Retry(str(exc), delay, exc.maybe_applied) from None

    async def _deliver_change(self, conn: asyncpg.Connection, head: storage.OutboxRow) -> None:
        """An edit, redaction or reaction; failures are retried as for messages."""
        try:
            await self.changes.deliver(conn, head)
        except (MatrixUnavailable, MatrixError) as exc:
            self._retry_unless_refused(exc, head)
            log.error(
                "outbox %s of %s dropped: Synapse refused it: %s", head.kind, head.message_id, exc
            )

    async def _deliver(self, conn: asyncpg.Connection, head: storage.OutboxRow) -> str | None:
        """The event id of the message's Matrix copy; None when there is nothing to send."""
        message = head.message
        if message is None or message.matrix_event_id is not None:
            return None  # deleted meanwhile, or already delivered (seen as an echo)
        sender = self._names.author_user_id(message.author_user_id, message.author_agent_id)
        if sender is None:
            return None  # a Matrix-side message: it is already there
        try:
            matrix_room_id = await self._rooms.matrix_room_for(head.room_id)
            if matrix_room_id is None:
                return None  # the city room is gone (cascade removes the row too)
            await self._ghosts.ensure(sender, head.author_name)
            await self._ghosts.ensure_joined(sender, matrix_room_id)
            if head.uncertain:
                found = await self._find_sent(matrix_room_id, sender, message.id)
                if found is not None:
                    log.info("outbox %s was already in Matrix as %s", message.id, found)
                    return found
            try:
                event_id = await self._send(matrix_room_id, sender, message)
            except MatrixError as exc:
                if exc.status != 403:
                    raise
                # Kicked or left since we joined: join again, once.
                await self._ghosts.forget_membership(sender, matrix_room_id)
                await self._ghosts.ensure_joined(sender, matrix_room_id)
                event_id = await self._send(matrix_room_id, sender, message)
        except (MatrixUnavailable, MatrixError) as exc:
            self._retry_unless_refused(exc, head)
            # A 4xx that keeps coming would hold the room's head forever and stop the
            # whole room, so the message stays city-only and we say so loudly.
            log.error("outbox %s dropped: Synapse refused it: %s", message.id, exc)
            return None
        self.sent += 1
        SENT.inc()
        return event_id

    async def _send(self, matrix_room_id: str, sender: str, message: Message) -> str:
        content = message_content(message)
        if message.reply_to is not None:
            content = await self._as_reply(content, matrix_room_id, message.reply_to)
        return await self._matrix.send(
            matrix_room_id, "m.room.message", message.id, content, sender
        )

    async def _as_reply(
        self, content: dict[str, Any], matrix_room_id: str, reply_to: str
    ) -> dict[str, Any]:
        """A reply to a message that reached Matrix (bridge/replies.py); else as is."""
        original = await self._messages.get(reply_to)
        if original is None or original.matrix_event_id is None:
            return content  # deleted, or never bridged: no event to point at
        original_sender = original.author_matrix_id or self._names.author_user_id(
            original.author_user_id, original.author_agent_id
        )
        if original_sender is None:
            return content
        return replies.with_reply(
            content,
            matrix_room_id=matrix_room_id,
            original=original,
            original_event_id=original.matrix_event_id,
            original_sender=original_sender,
            mention=original.author_matrix_id is not None,
        )

    async def _find_sent(self, matrix_room_id: str, sender: str, message_id: str) -> str | None:
        events = await self._matrix.recent_events(
            matrix_room_id, user_id=self._names.bot, senders=[sender], limit=100
        )
        for event in events:
            content = event.get("content")
            if isinstance(content, dict) and content.get(CITY_MESSAGE_ID) == message_id:
                event_id = event.get("event_id")
                return event_id if isinstance(event_id, str) else None
        return None
