"""Second Me: a personal agent per user, answered by Agents Core.

A user's conversation is the latest of their sessions. An exchange stores the
user's message first (so it is kept even when Agents Core fails), sends Agents
Core that message with the history before it (oldest first), and stores the reply.
No database connection is held while Agents Core thinks: a slow agent must not
starve the rest of the service of connections.

That private history is for private conversations only (the HTTP API, a Matrix DM).
A question asked in a room others read gets the room's recent messages as context
and leaves the private history alone, both ways (SPEC §12): the reply is public, so
nothing private may shape it, and the room already is the record of the exchange.

Users are city users (`u_…`) or Matrix users (`@…:S`, for Second Me's DMs); the
two id spaces cannot collide, so one table keeps both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from gateway.core.errors import AppError
from gateway.core.models import Message
from gateway.core.secondme import metrics
from gateway.core.secondme.ports import AgentsCore, AgentTimeout, AgentUnavailable, HistoryItem
from gateway.core.secondme.ratelimit import OncePerWindow, RateDecision, SlidingWindowLimiter
from gateway.core.storage import Executor
from gateway.core.storage import messages as messages_sql
from gateway.core.storage import secondme as sql
from gateway.core.storage.secondme import SecondMeMessage, SecondMeSession
from gateway.core.text import clean_text
from gateway.infra.metrics import timed
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

PROMPT_MAX_CHARS = 8000
# `history` in an invoke answer: at least the exchange itself.
MIN_ANSWER_HISTORY = 2
# SECONDME_RATE_PER_MINUTE's window; also how long a user's one notice lasts.
RATE_WINDOW_SECONDS = 60.0

# What Second Me says in a room instead of an answer. They are not answers: they are
# never stored as such, nor sent back to Agents Core as part of a room's context.
UNAVAILABLE_NOTICE = "Second Me is unavailable right now. Please try again later."
TIMEOUT_NOTICE = "Second Me did not answer in time. Please try again later."
RATE_LIMITED_NOTICE_PREFIX = "Too many requests to Second Me."


def rate_limited_notice(retry_after_seconds: int) -> str:
    return f"{RATE_LIMITED_NOTICE_PREFIX} Please try again in {retry_after_seconds} s."


def is_notice(text: str) -> bool:
    return text in (UNAVAILABLE_NOTICE, TIMEOUT_NOTICE) or text.startswith(
        RATE_LIMITED_NOTICE_PREFIX
    )


@dataclass(frozen=True, slots=True)
class Turn:
    """One question, ready to send to Agents Core.

    A private turn (HTTP, a Matrix DM) has its prompt stored in the asker's history
    (`stored`) and the history before it as context. A turn in a shared room stores
    nothing (`stored` is None) and its context is the room's recent messages.
    """

    user_id: str
    prompt: str
    history: list[HistoryItem]
    stored: SecondMeMessage | None = None

    @classmethod
    def private(cls, prompt: SecondMeMessage, context: list[SecondMeMessage]) -> Turn:
        history = [HistoryItem(m.role, m.content) for m in context]
        return cls(prompt.user_id, prompt.content, history, prompt)


def shared_room_item(author: str, body: str, *, own: bool) -> HistoryItem | None:
    """One message of a shared room as context: None for Second Me's own notices.

    Everyone else is a "user", named in the text, so that the agent can tell the
    asker from the others; Second Me's earlier answers are the "assistant".
    """
    if own:
        return None if is_notice(body) else HistoryItem("assistant", body)
    return HistoryItem("user", f"{author}: {body}")


def city_room_history(messages: Iterable[Message], agent_id: str) -> list[HistoryItem]:
    """A city room's messages (oldest first) as Agents Core context."""
    items = []
    for m in messages:
        author = m.author_user_id or m.author_matrix_id or m.author_agent_id or "someone"
        item = shared_room_item(author, m.body, own=m.author_agent_id == agent_id)
        if item is not None:
            items.append(item)
    return items


@dataclass(frozen=True, slots=True)
class Exchange:
    reply: str
    history: list[SecondMeMessage]


def check_prompt(prompt: str) -> str:
    return clean_text(prompt, field="prompt", max_chars=PROMPT_MAX_CHARS, code="invalid_prompt")


class SecondMeRateLimited(AppError):
    """429 `rate_limited`: the user used up their Second Me calls of the last minute.

    The wait travels as a number (`retry_after_seconds`); the `Retry-After` header
    is derived from it, never read back.
    """

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"too many Second Me requests; try again in {retry_after_seconds} s",
            headers={"Retry-After": str(retry_after_seconds)},
        )
        self.retry_after_seconds = retry_after_seconds


def agent_error(exc: AgentUnavailable) -> AppError:
    """The API's answer to a failed Agents Core call (the prompt is already stored)."""
    if isinstance(exc, AgentTimeout):
        return AppError(
            504,
            "agent_timeout",
            f"Second Me did not answer in time ({exc.message}). "
            "Your message was saved; please try again.",
        )
    return AppError(
        502,
        "agent_unavailable",
        f"Second Me is unavailable right now ({exc.message}). "
        "Your message was saved; please try again later.",
    )


class SecondMeService:
    def __init__(
        self,
        db: asyncpg.Pool,
        client: AgentsCore | None,
        limiter: SlidingWindowLimiter,
        *,
        agent_id: str,
        history_messages: int,
        notices: OncePerWindow | None = None,
    ) -> None:
        self._db = db
        self._client = client
        self._limiter = limiter
        self._notices = notices
        self.agent_id = agent_id
        self.history_messages = history_messages

    @property
    def configured(self) -> bool:
        return self._client is not None

    def require_configured(self) -> None:
        if self._client is None:
            raise AppError(
                503,
                "secondme_not_configured",
                "Second Me is not configured on this server (AGENTS_CORE_URL is not set)",
            )

    async def rate(self, user_id: str) -> RateDecision:
        """Record one call by the user if their budget of the last minute allows it."""
        return await self._limiter.check(user_id)

    async def notice_due(self, user_id: str) -> bool:
        """True for the first refusal of the user in a rate window (the one notice)."""
        return self._notices is not None and await self._notices.first(user_id)

    async def check_rate(self, user_id: str) -> None:
        """429 `rate_limited` once the user used up their calls of the last minute."""
        decision = await self.rate(user_id)
        if not decision.allowed:
            raise SecondMeRateLimited(decision.retry_after_seconds)

    # --- the seed's functions --------------------------------------------------------
    async def get_or_create_session(self, user_id: str) -> SecondMeSession:
        async with self._db.acquire() as conn, conn.transaction():
            return await sql.get_or_create_session(conn, user_id)

    async def get_last_messages(self, user_id: str, limit: int = 5) -> list[SecondMeMessage]:
        """The user's latest `limit` messages, oldest first."""
        return await sql.last_messages(self._db, user_id, limit)

    async def invoke_second_me(self, user_id: str, prompt: str) -> Exchange:
        """One exchange for the HTTP API: 422 / 503 / 429 / 502 / 504 as AppError."""
        check_prompt(prompt)
        self.require_configured()
        await self.check_rate(user_id)
        async with self._db.acquire() as conn, conn.transaction():
            turn = await self.start_turn(conn, user_id, prompt)
        # The connection is back in the pool while Agents Core works.
        try:
            reply = await self.ask(turn)
        except AgentUnavailable as exc:
            raise agent_error(exc) from None
        await self.record_reply(self._db, turn, reply)
        history = await sql.last_messages(
            self._db, user_id, max(self.history_messages, MIN_ANSWER_HISTORY)
        )
        return Exchange(reply, history)

    # --- steps, shared with replies in rooms -------------------------------------------
    async def start_turn(self, conn: asyncpg.Connection, user_id: str, prompt: str) -> Turn:
        """Store the prompt in the user's active session (call inside a transaction)."""
        session = await sql.get_or_create_session(conn, user_id)
        message = await sql.insert_message(conn, session.id, user_id, "user", prompt)
        return await self.resume_turn(conn, message)

    async def resume_turn(self, db: Executor, prompt: SecondMeMessage) -> Turn:
        """The turn of an already stored prompt (its context is what came before it)."""
        context = await sql.messages_before(db, prompt, self.history_messages)
        return Turn.private(prompt, context)

    async def city_room_turn(
        self, db: Executor, user_id: str, prompt: str, room_id: str, asked: Message | None
    ) -> Turn:
        """A question in a city room: the room's messages before it are the context.

        `asked` is the room message that asked (None if it cannot be found: then the
        room's latest messages). Nothing is read from or written to private history.
        """
        before = asked.seq if asked is not None and asked.room_id == room_id else None
        recent = (
            await messages_sql.latest_messages(db, room_id, self.history_messages, before)
            if self.history_messages > 0
            else []
        )
        return Turn(user_id, prompt, city_room_history(recent, self.agent_id))

    async def ask(self, turn: Turn) -> str:
        """Agents Core's reply; raises AgentUnavailable / AgentTimeout (no AppError)."""
        self.require_configured()
        assert self._client is not None
        with timed(metrics.AGENTS_CORE_SECONDS, metrics.AGENTS_CORE_FAILURES):
            return await self._client.invoke(
                agent_id=self.agent_id,
                user_id=turn.user_id,
                prompt=turn.prompt,
                history=turn.history,
            )

    async def record_reply(self, db: Executor, turn: Turn, reply: str) -> SecondMeMessage | None:
        """Store the answer of a private turn; a shared room's turn stores nothing."""
        if turn.stored is None:
            return None
        return await sql.insert_message(
            db, turn.stored.session_id, turn.user_id, "assistant", reply
        )


def build_secondme(
    settings: Settings, *, db: asyncpg.Pool, redis: aioredis.Redis, agents: AgentsCore | None
) -> SecondMeService:
    """The service (answering 503 `secondme_not_configured` when `agents` is None)."""
    limiter = SlidingWindowLimiter(
        redis,
        key_prefix=f"{settings.city_redis_prefix}secondme:rate:",
        limit=settings.secondme_rate_per_minute,
        window_seconds=RATE_WINDOW_SECONDS,
    )
    # One "too many requests" notice per user per rate window, across processes.
    notices = OncePerWindow(
        redis,
        key_prefix=f"{settings.city_redis_prefix}secondme:notice:",
        window_seconds=RATE_WINDOW_SECONDS,
    )
    return SecondMeService(
        db,
        agents,
        limiter,
        agent_id=settings.secondme_agent_id,
        history_messages=settings.secondme_history_messages,
        notices=notices,
    )
