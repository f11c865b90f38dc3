"""Second Me as a Matrix user of the bridge (`@secondme:S`).

- Invites: like a mautrix bridge's ghosts, `@secondme` joins direct chats (the
  invite says `is_direct`) and bridged city rooms, and rejects the rest; and it
  accepts at most `LIMIT_SECONDME_INVITES_PER_HOUR` invites per inviting user per
  hour, counted in Redis across processes (each joined room is work for us and a
  way to make Second Me talk somewhere).
- A DM (a non-bridged room where Second Me and the sender are the only members) gets
  a reply to every text message, sent straight into the room as `@secondme` (by
  bridge.secondme_channel, the replies engine's MatrixReplyChannel); the
  conversation is the Matrix user's Second Me history (keyed by their Matrix id).
- In a bridged room, a message that mentions Second Me (`m.mentions`, a pill link,
  or `@secondme` in the body) gets its reply as a city message by the agent, so the
  city sees it too; the outbox sends it to Matrix as `@secondme`. In other rooms
  with more members (a DM someone else was invited to) only mentions are answered,
  straight into the room. Both are shared rooms: the context is the room's recent
  messages, never the asker's private history.

"Exactly one reply" rests on the reply claims of `gateway.core.secondme.replies`, keyed
by the triggering event id: the inbox already hands each event to listeners once,
and the claim also covers a second path to the same event (the catch-up after a
join, another process, a re-sent transaction). Listeners run inside Synapse's
transaction request, so everything that waits on the network runs in the background.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote

import asyncpg
import redis.asyncio as aioredis

from bridge import metrics
from bridge.inbox import InboundMessage
from bridge.matrix import CS, MatrixError, MatrixUnavailable
from bridge.secondme_channel import TRIGGER_KEY, trigger_id
from bridge.service import Bridge
from gateway.core.secondme.mentions import MentionRule
from gateway.core.secondme.ratelimit import SlidingWindowLimiter
from gateway.core.secondme.replies import (
    AGENT_DISPLAY_NAME,
    MATRIX_DM,
    MATRIX_ROOM,
    SecondMeReplies,
)
from gateway.core.storage import rooms as rooms_sql
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["TRIGGER_KEY", "SecondMeBot", "start_secondme_bot"]
# After joining, messages the inviter sent before we were in are answered too
# (Synapse only pushes a room's events once one of our users has joined it).
CATCH_UP_EVENTS = 20
ANSWERED_MSGTYPES = ("m.text",)
# Joining and reading membership retry a passing Synapse failure a few times.
RETRY_ATTEMPTS = 5
RETRY_FIRST_SECONDS = 0.5
# Invites are capped per inviter over this window (LIMIT_SECONDME_INVITES_PER_HOUR).
INVITE_WINDOW_SECONDS = 3600.0
NOT_A_DM_REASON = (
    "Second Me joins direct chats only; mention @secondme in a city room to ask it there."
)
TOO_MANY_INVITES_REASON = "Too many invites to Second Me from you; please try again later."


class SecondMeBot:
    def __init__(
        self,
        bridge: Bridge,
        replies: SecondMeReplies,
        rule: MentionRule,
        *,
        db: asyncpg.Pool,
        invites: SlidingWindowLimiter,
    ) -> None:
        self._bridge = bridge
        self._names = bridge.names
        self._replies = replies
        self._rule = rule
        self._db = db
        self._invites = invites
        self.user_id = bridge.names.secondme
        self._pill = re.compile(
            "matrix\\.to/#/(?:"
            + re.escape(self.user_id)
            + "|"
            + re.escape(quote(self.user_id, safe=""))
            + ")",
            re.IGNORECASE,
        )
        self._display_prefix = re.compile(
            rf"^\s*{re.escape(AGENT_DISPLAY_NAME)}\s*[:,]?\s*", re.IGNORECASE
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- rules ---------------------------------------------------------------------
    def mentioned(self, content: dict[str, Any], body: str) -> bool:
        mentions = content.get("m.mentions")
        if isinstance(mentions, dict):
            user_ids = mentions.get("user_ids")
            if isinstance(user_ids, list) and self.user_id in user_ids:
                return True
        formatted = content.get("formatted_body")
        if isinstance(formatted, str) and self._pill.search(formatted):
            return True
        return self._rule.mentions(body)

    def prompt(self, body: str) -> str:
        """The question without the mention (a pill's body is the display name)."""
        text = self._rule.prompt(body)
        stripped = self._display_prefix.sub("", text, count=1).strip()
        return stripped or text

    # --- bridge listeners (they run inside Synapse's transaction request) ------------
    async def on_event(self, event: dict[str, Any]) -> None:
        if (
            event.get("type") == "m.room.member"
            and event.get("state_key") == self.user_id
            and isinstance(event.get("content"), dict)
            and event["content"].get("membership") == "invite"
            and isinstance(event.get("room_id"), str)
            and isinstance(event.get("sender"), str)
            and not self._names.is_ours(event["sender"])
        ):
            since = event.get("origin_server_ts")
            room_id, inviter = event["room_id"], event["sender"]
            since_ts = since if isinstance(since, int) else 0
            is_direct = event["content"].get("is_direct") is True
            self._spawn(self._invited(room_id, inviter, since_ts, is_direct))

    async def on_message(self, inbound: InboundMessage) -> None:
        if inbound.msgtype not in ANSWERED_MSGTYPES or self._names.is_ours(inbound.sender):
            return
        if inbound.city_room_id is not None:
            if self.mentioned(inbound.content, inbound.body):
                # The reply is a city message: the city sees it, the outbox sends it
                # to Matrix as @secondme.
                self._replies.submit(
                    trigger_id=trigger_id(inbound.event_id),
                    kind="city_room",
                    room_id=inbound.city_room_id,
                    requester_id=inbound.sender,
                    prompt=self.prompt(inbound.body),
                )
            return
        self._background(
            lambda: self._in_matrix_room(
                inbound.matrix_room_id,
                inbound.event_id,
                inbound.sender,
                inbound.body,
                inbound.content,
            )
        )

    # --- Matrix-only rooms (DMs) -----------------------------------------------------
    async def _in_matrix_room(
        self,
        room_id: str,
        event_id: str,
        sender: str,
        body: str,
        content: dict[str, Any],
        members: list[str] | None = None,
    ) -> None:
        if members is None:
            members = await self._joined_members(room_id)
        if self.user_id not in members:
            return  # a room one of our ghosts is in, not Second Me
        direct = len(members) == 2 and sender in members
        if not direct and not self.mentioned(content, body):
            return
        await self._replies.handle(
            trigger_id=trigger_id(event_id),
            # Anyone else in the room reads the answer: a shared room, not a DM.
            kind=MATRIX_DM if direct else MATRIX_ROOM,
            room_id=room_id,
            requester_id=sender,
            prompt=self.prompt(body) if not direct else body,
        )

    # --- invites -------------------------------------------------------------------
    async def _invited(self, room_id: str, inviter: str, since_ts: int, is_direct: bool) -> None:
        """Accept or reject one invite; counted once, whatever the retries of the join."""
        bridged = await rooms_sql.get_room_by_matrix_id(self._db, room_id) is not None
        if not is_direct and not bridged:
            outcome, reason = "rejected_room", NOT_A_DM_REASON
        elif not (await self._invites.check(inviter)).allowed:
            outcome, reason = "rejected_limit", TOO_MANY_INVITES_REASON
        else:
            metrics.SECONDME_INVITES.labels("accepted").inc()
            await self._retrying(lambda: self._accept_invite(room_id, inviter, since_ts))
            return
        metrics.SECONDME_INVITES.labels(outcome).inc()
        log.info("Second Me rejects the invite to %s by %s (%s)", room_id, inviter, outcome)
        await self._retrying(lambda: self._reject_invite(room_id, reason))

    async def _reject_invite(self, room_id: str, reason: str) -> None:
        """Leave the room we are invited to (that is how Matrix rejects an invite)."""
        try:
            await self._bridge.matrix.request(
                "POST",
                f"{CS}/rooms/{quote(room_id, safe='')}/leave",
                user_id=self.user_id,
                body={"reason": reason},
            )
        except MatrixError as exc:
            if exc.status not in (403, 404):  # the invite was withdrawn meanwhile
                raise

    async def _accept_invite(self, room_id: str, inviter: str, since_ts: int) -> None:
        await self._bridge.ensure_user(self.user_id, AGENT_DISPLAY_NAME)
        await self._bridge.join(room_id, self.user_id)
        log.info("Second Me joined %s (invited by %s)", room_id, inviter)
        # What the inviter said between inviting and our join never reached the
        # appservice. (Only since the invite: a re-invite must not answer old talk.)
        members = await self._joined_members(room_id)
        events = await self._bridge.matrix.recent_events(
            room_id, user_id=self.user_id, senders=[inviter], limit=CATCH_UP_EVENTS
        )
        for event in reversed(events):  # oldest first
            content = event.get("content")
            event_id = event.get("event_id")
            ts = event.get("origin_server_ts")
            if not isinstance(content, dict) or not isinstance(event_id, str):
                continue
            if not isinstance(ts, int) or ts < since_ts:
                continue
            body = content.get("body")
            if content.get("msgtype") in ANSWERED_MSGTYPES and isinstance(body, str) and body:
                await self._in_matrix_room(room_id, event_id, inviter, body, content, members)

    async def _joined_members(self, room_id: str) -> list[str]:
        try:
            data = await self._bridge.matrix.request(
                "GET",
                f"{CS}/rooms/{quote(room_id, safe='')}/joined_members",
                user_id=self.user_id,
            )
        except MatrixError as exc:
            if exc.status in (403, 404):
                return []  # Second Me is not in that room
            raise
        joined = data.get("joined")
        return list(joined) if isinstance(joined, dict) else []

    # --- life --------------------------------------------------------------------------
    def _background(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` in the background, again after a passing Synapse failure."""
        self._spawn(self._retrying(work))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background (listeners must not wait on the network)."""
        if self._closed:
            work.close()
            return

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Second Me bot task failed")

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _retrying(work: Callable[[], Awaitable[None]]) -> None:
        """Run `work`, again after a passing Synapse failure (with backoff)."""
        delay = RETRY_FIRST_SECONDS
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                await work()
                return
            except (MatrixUnavailable, MatrixError) as exc:
                transient = isinstance(exc, MatrixUnavailable) or exc.transient
                if not transient or attempt == RETRY_ATTEMPTS:
                    log.warning("Second Me bot gave up: %s", exc)
                    return
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay *= 2

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def start_secondme_bot(
    bridge: Bridge,
    replies: SecondMeReplies,
    rule: MentionRule,
    settings: Settings,
    *,
    db: asyncpg.Pool,
    redis: aioredis.Redis,
    stack: AsyncExitStack,
) -> SecondMeBot:
    """Starter: Second Me listening to the bridge's inbox (invites, DMs, mentions).

    `replies` answers; it was built with the bridge's SecondMeChannel, which sends
    those answers into Matrix rooms that are not bridged.
    """
    # Invites accepted per inviting Matrix user, across processes (SPEC §12).
    invites = SlidingWindowLimiter(
        redis,
        key_prefix=f"{settings.city_redis_prefix}secondme:invites:",
        limit=settings.limit_secondme_invites_per_hour,
        window_seconds=INVITE_WINDOW_SECONDS,
    )
    bot = SecondMeBot(bridge, replies, rule, db=db, invites=invites)
    bridge.listeners.events.append(bot.on_event)
    bridge.listeners.messages.append(bot.on_message)
    stack.push_async_callback(bot.aclose)
    return bot
