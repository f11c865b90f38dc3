"""Second Me's replies in rooms and DMs: exactly one per asking message.

Whatever asks (a city mention, a Matrix mention, a Matrix DM) is named by a trigger
id — the city message id or the Matrix event id — and the first process to insert
that id into `secondme_replies` owns the reply. Every other process, every re-sent
Matrix transaction and every second look at the same message finds the claim and
does nothing.

Where it was asked decides what Agents Core sees (SPEC §12):

- `matrix_dm`, a DM (only the asker and Second Me): private. The prompt is stored
  in the asker's Second Me history and that history is the context.
- `city_room` (a city room, or a bridged Matrix room — the same room) and
  `matrix_room` (a Matrix room with more members, not bridged): shared. The
  context is the room's recent messages; the asker's private history is neither
  read nor written, since everyone in the room reads the reply.

The owner asks Agents Core with no database connection held and then, in one
transaction, checks the claim is still pending, posts the reply (a city message by
the agent, which the outbox carries to Matrix; in Matrix-only rooms a Matrix
message), stores a private answer in the history and closes the claim. A process
that dies half-way leaves a pending claim whose lease runs out; the sweeper of any
process takes it over (the prompt is stored once, the reply posted once).

When Agents Core fails, the room gets a short notice from the agent instead of
silence, and nothing is invented: the notice is not stored as Second Me's answer.
A rate-limited user gets one "too many requests" notice per rate window; refusals
after it are silent, so that a flood of mentions cannot become a flood of notices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import asyncpg

from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.messages import Author, MessageService
from gateway.core.models import Message
from gateway.core.secondme import metrics
from gateway.core.secondme.ports import AgentTimeout, AgentUnavailable, MatrixReplyChannel
from gateway.core.secondme.service import (
    TIMEOUT_NOTICE,
    UNAVAILABLE_NOTICE,
    SecondMeService,
    Turn,
    rate_limited_notice,
)
from gateway.core.storage import Executor
from gateway.core.storage import messages as messages_sql
from gateway.core.storage import secondme as sql
from gateway.core.storage.secondme import ReplyClaim

log = logging.getLogger(__name__)

__all__ = [
    "AGENT_DISPLAY_NAME",
    "TIMEOUT_NOTICE",
    "UNAVAILABLE_NOTICE",
    "SecondMeReplies",
    "rate_limited_notice",
]

AGENT_DISPLAY_NAME = "Second Me"
# Claim kinds (secondme_replies.kind): which rooms are private, which are shared.
CITY_ROOM = "city_room"
MATRIX_DM = "matrix_dm"
MATRIX_ROOM = "matrix_room"
MATRIX_KINDS = (MATRIX_DM, MATRIX_ROOM)
# A claim whose holder neither finished nor died within this much beyond the
# Agents Core timeout is taken over by another process.
LEASE_MARGIN_SECONDS = 60.0
# Take-overs per trigger before giving up (each one means a process died on it).
MAX_ATTEMPTS = 3
# Replies being worked on at once by one process; more wait their turn.
MAX_IN_FLIGHT = 32
SWEEP_BATCH = 20


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str  # what the room gets
    reply: str | None  # Agents Core's answer (stored as history); None for a notice

    @property
    def state(self) -> str:
        return "answered" if self.reply is not None else "failed"


class SecondMeReplies:
    def __init__(
        self,
        *,
        db: asyncpg.Pool,
        service: SecondMeService,
        messages: MessageService,
        hooks: CityHooks,
        agent_id: str,
        max_chars: int,
        lease_seconds: float,
        matrix: MatrixReplyChannel | None = None,
    ) -> None:
        self._db = db
        self._service = service
        self._messages = messages
        self._hooks = hooks
        self._author = Author(agent_id=agent_id, display_name=AGENT_DISPLAY_NAME)
        self._max_chars = max_chars
        self._lease_seconds = lease_seconds
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # Matrix rooms that are not bridged (the bridge's channel); without it, Matrix
        # claims wait (pending) until a process with the bridge takes them over.
        self._matrix = matrix

    # --- entry points --------------------------------------------------------------
    def submit(
        self, *, trigger_id: str, kind: str, room_id: str, requester_id: str, prompt: str
    ) -> None:
        """Answer in the background (callers are after-commit hooks that must not wait)."""
        if self._closed:
            return
        task = asyncio.ensure_future(
            self._guarded(
                self.handle(
                    trigger_id=trigger_id,
                    kind=kind,
                    room_id=room_id,
                    requester_id=requester_id,
                    prompt=prompt,
                ),
                trigger_id,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(
        self, *, trigger_id: str, kind: str, room_id: str, requester_id: str, prompt: str
    ) -> bool:
        """Claim and answer; False when the trigger was already claimed (by anyone)."""
        claim = await sql.claim_reply(
            self._db,
            trigger_id=trigger_id,
            kind=kind,
            room_id=room_id,
            requester_id=requester_id,
            prompt=prompt,
            lease_seconds=self._lease_seconds,
        )
        if claim is None:
            return False
        decision = await self._service.rate(requester_id)
        if not decision.allowed:
            await self._refuse(claim, decision.retry_after_seconds)
            return True
        await self._answer(claim)
        return True

    async def _refuse(self, claim: ReplyClaim, retry_after_seconds: int) -> None:
        """Over the rate limit: the first refusal in a window says so, later ones are silent."""
        if await self._service.notice_due(claim.requester_id):
            metrics.SECONDME_RATE_LIMITED.labels("notice").inc()
            await self._finish(claim, None, Outcome(rate_limited_notice(retry_after_seconds), None))
            return
        metrics.SECONDME_RATE_LIMITED.labels("silent").inc()
        await sql.finish_claim(self._db, claim.trigger_id, "failed", None)

    async def sweep_once(self) -> int:
        """Take over claims left pending by a process that died; returns how many."""
        if self._closed:
            return 0
        abandoned = await sql.abandon_exhausted(self._db, MAX_ATTEMPTS)
        if abandoned:
            log.warning(
                "gave up on %d Second Me replies after %d attempts", abandoned, MAX_ATTEMPTS
            )
        claims = await sql.reclaim_expired(self._db, self._lease_seconds, MAX_ATTEMPTS, SWEEP_BATCH)
        for claim in claims:
            log.info(
                "taking over Second Me reply %s (attempt %d)", claim.trigger_id, claim.attempts
            )
        await asyncio.gather(*(self._guarded(self._answer(c), c.trigger_id) for c in claims))
        return len(claims)

    async def aclose(self) -> None:
        """Stop; unfinished claims stay pending and another process takes them over."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for background replies started so far (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- one reply -----------------------------------------------------------------
    async def _guarded(self, work: Awaitable[object], trigger_id: str) -> None:
        async with self._slots:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                # The claim stays pending; the sweeper retries it after the lease.
                log.exception("Second Me reply for %s failed", trigger_id)

    async def _answer(self, claim: ReplyClaim) -> None:
        turn = await self._turn(claim)
        if turn is None:
            return
        try:
            reply = await self._service.ask(turn)
        except AgentTimeout:
            outcome = Outcome(TIMEOUT_NOTICE, None)
        except AgentUnavailable:
            outcome = Outcome(UNAVAILABLE_NOTICE, None)
        else:
            outcome = Outcome(reply, reply)
        await self._finish(claim, turn, outcome)

    async def _turn(self, claim: ReplyClaim) -> Turn | None:
        """What to ask Agents Core; None when the claim is no longer ours to answer."""
        if claim.kind == MATRIX_ROOM:
            return await self._matrix_room_turn(claim)
        async with self._db.acquire() as conn, conn.transaction():
            current = await sql.get_claim_for_update(conn, claim.trigger_id)
            if current is None or current.state != "pending":
                return None
            if claim.kind == CITY_ROOM:
                asked = await self._asking_message(conn, claim.trigger_id)
                return await self._service.city_room_turn(
                    conn, claim.requester_id, claim.prompt, claim.room_id, asked
                )
            # A DM: the prompt goes into the asker's history, once even across take-overs.
            if current.prompt_message_id is not None:
                stored = await sql.get_message(conn, current.prompt_message_id)
                if stored is not None:
                    return await self._service.resume_turn(conn, stored)
            turn = await self._service.start_turn(conn, claim.requester_id, claim.prompt)
            assert turn.stored is not None
            await sql.set_prompt_message(conn, claim.trigger_id, turn.stored.id)
            return turn

    async def _matrix_room_turn(self, claim: ReplyClaim) -> Turn | None:
        if self._matrix is None:
            log.error("no Matrix context for Second Me reply %s", claim.trigger_id)
            return None  # stays pending; a process with the bridge takes it over
        async with self._db.acquire() as conn:
            current = await sql.get_claim(conn, claim.trigger_id)
        if current is None or current.state != "pending":
            return None
        history = await self._matrix.room_context(claim, self._service.history_messages)
        return Turn(claim.requester_id, claim.prompt, history)

    @staticmethod
    async def _asking_message(db: Executor, trigger_id: str) -> Message | None:
        """The city message a `city_room` claim answers (a Matrix one arrived as one too)."""
        source, _, ref = trigger_id.partition(":")
        if source == "city":
            return await messages_sql.get_message(db, ref)
        if source == "matrix":
            return await messages_sql.get_by_matrix_event_id(db, ref)
        return None

    async def _finish(self, claim: ReplyClaim, turn: Turn | None, outcome: Outcome) -> None:
        text = self._room_text(outcome.text)
        if claim.kind in MATRIX_KINDS:
            await self._finish_dm(claim, turn, outcome, text)
            return
        try:
            posted = await self._finish_in_city_room(claim, turn, outcome, text)
        except AppError as exc:  # the room is gone, or the text is unusable
            log.warning("cannot post Second Me reply %s: %s", claim.trigger_id, exc.message)
            await sql.finish_claim(self._db, claim.trigger_id, "failed", None)
            return
        if posted is not None:
            await self._hooks.emit_message(posted)

    async def _finish_in_city_room(
        self, claim: ReplyClaim, turn: Turn | None, outcome: Outcome, text: str
    ) -> Message | None:
        async with self._db.acquire() as conn, conn.transaction():
            current = await sql.get_claim_for_update(conn, claim.trigger_id)
            if current is None or current.state != "pending":
                return None  # someone else finished it meanwhile
            # The message service announces only writes it commits itself; this one
            # commits with the claim, so the caller announces it after commit.
            result = await self._messages.post(claim.room_id, self._author, text, db=conn)
            if turn is not None and outcome.reply is not None:
                await self._service.record_reply(conn, turn, outcome.reply)
            await sql.finish_claim(conn, claim.trigger_id, outcome.state, result.message.id)
            return result.message

    async def _finish_dm(
        self, claim: ReplyClaim, turn: Turn | None, outcome: Outcome, text: str
    ) -> None:
        if self._matrix is None:
            log.error("no Matrix sender for Second Me reply %s", claim.trigger_id)
            return  # stays pending; a process with the bridge takes it over
        event_id = await self._matrix.send_dm(claim, text)
        async with self._db.acquire() as conn, conn.transaction():
            current = await sql.get_claim_for_update(conn, claim.trigger_id)
            if current is None or current.state != "pending":
                return
            if turn is not None and outcome.reply is not None:
                await self._service.record_reply(conn, turn, outcome.reply)
            await sql.finish_claim(conn, claim.trigger_id, outcome.state, event_id)

    def _room_text(self, text: str) -> str:
        """Fit a reply into a room message (the HTTP API returns it whole)."""
        text = text.replace("\x00", "")
        if not text.strip():
            return UNAVAILABLE_NOTICE
        if len(text) > self._max_chars:
            text = text[: self._max_chars - 1] + "…"
        return text
