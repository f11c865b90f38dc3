"""City users mentioning `@secondme` in a city room get Second Me's reply there.

The trigger is the after-commit `message_posted` hook, which runs once, in the
process that stored the message. If that process dies between the commit and the
hook, the sweeper finds the unclaimed mention a little later (any process), so the
mention is still answered, once. A city room is public: the reply's context is the
room's recent messages, never the asker's private history (see
gateway.core.secondme.replies). Messages from Matrix users are the Matrix bot's
job (it sees the raw event, `m.mentions` included); messages from agents are never
answered, so two agents cannot talk each other into a loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import asyncpg

from gateway.core.models import Message
from gateway.core.secondme.ratelimit import SlidingWindowLimiter
from gateway.core.secondme.replies import LEASE_MARGIN_SECONDS, SecondMeReplies
from gateway.core.secondme.service import SecondMeService
from gateway.core.storage import secondme as sql

if TYPE_CHECKING:
    from gateway.app.runtime import Runtime

log = logging.getLogger(__name__)

REPLIES_EXTENSION = "secondme_replies"
MENTIONS_EXTENSION = "secondme_mentions"
BRIDGE_EXTENSION = "bridge"  # bridge.service.EXTENSION, without importing the bridge
SWEEP_INTERVAL_SECONDS = 5.0
# A mention still unclaimed this long after it was stored lost its hook.
MISSED_AFTER_SECONDS = 15.0
# How far back the sweeper looks for lost mentions.
MISSED_WINDOW_SECONDS = 600.0


class MentionRule:
    """`@secondme` as a word, case-insensitive; `@secondme:server` counts too."""

    def __init__(self, localpart: str) -> None:
        self.needle = f"@{localpart}"
        name = re.escape(localpart)
        self._mention = re.compile(rf"(?<![\w@]){re.escape('@')}{name}(?![\w-])", re.IGNORECASE)
        # The mention with an optional `:server` part, for taking it out of the prompt.
        self._token = re.compile(
            rf"(?<![\w@])@{name}(?::[A-Za-z0-9.\-]+(?::\d+)?)?(?![\w-])", re.IGNORECASE
        )

    def mentions(self, body: str) -> bool:
        return self._mention.search(body) is not None

    def prompt(self, body: str) -> str:
        """The question without the mention ("@secondme, what is…" → "what is…")."""
        text = self._token.sub(" ", body)
        text = re.sub(r"^[\s,:;.!-]+", "", text).strip()
        return re.sub(r"[ \t]{2,}", " ", text) if text else body


class CityMentions:
    def __init__(self, replies: SecondMeReplies, db: asyncpg.Pool, rule: MentionRule) -> None:
        self._replies = replies
        self._db = db
        self.rule = rule

    async def on_message(self, message: Message) -> None:
        """`message_posted` listener: must return at once (it runs inside the post)."""
        if not self._is_city_user_message(message) or not self.rule.mentions(message.body):
            return
        assert message.author_user_id is not None
        self._replies.submit(
            trigger_id=f"city:{message.id}",
            kind="city_room",
            room_id=message.room_id,
            requester_id=message.author_user_id,
            prompt=self.rule.prompt(message.body),
        )

    async def sweep_once(self) -> int:
        """Answer mentions whose hook never ran; returns how many this process claimed."""
        missed = await sql.unclaimed_city_mentions(
            self._db,
            self.rule.needle,
            older_than_seconds=MISSED_AFTER_SECONDS,
            newer_than_seconds=MISSED_WINDOW_SECONDS,
            limit=20,
        )
        claimed = await asyncio.gather(
            *(
                self._replies.handle(
                    trigger_id=f"city:{m.id}",
                    kind="city_room",
                    room_id=m.room_id,
                    requester_id=m.author_user_id,
                    prompt=self.rule.prompt(m.body),
                )
                for m in missed
                if self.rule.mentions(m.body)
            )
        )
        return sum(claimed)

    @staticmethod
    def _is_city_user_message(message: Message) -> bool:
        return (
            message.author_user_id is not None
            and message.author_agent_id is None
            and message.author_matrix_id is None
        )


async def start_room_replies(rt: Runtime, stack: AsyncExitStack, service: SecondMeService) -> None:
    settings = rt.settings
    replies = SecondMeReplies(
        db=rt.db,
        service=service,
        messages=rt.messages,
        hooks=rt.hooks,
        agent_id=settings.secondme_agent_id,
        max_chars=settings.city_message_max_chars,
        lease_seconds=settings.agents_core_timeout + LEASE_MARGIN_SECONDS,
    )
    stack.push_async_callback(replies.aclose)
    rule = MentionRule(settings.secondme_matrix_localpart)
    mentions = CityMentions(replies, rt.db, rule)
    rt.hooks.message_posted.append(mentions.on_message)
    rt.extensions[REPLIES_EXTENSION] = replies
    rt.extensions[MENTIONS_EXTENSION] = mentions
    bridge = rt.extensions.get(BRIDGE_EXTENSION)
    if bridge is not None:
        # Second Me's Matrix user: DMs and mentions from Matrix (needs the bridge,
        # whose starter runs before this one).
        from bridge.secondme_bot import EXTENSION as BOT_EXTENSION
        from bridge.secondme_bot import INVITE_WINDOW_SECONDS, attach_secondme_bot

        # Invites accepted per inviting Matrix user, across processes (SPEC §12).
        invites = SlidingWindowLimiter(
            rt.redis,
            key_prefix=f"{settings.city_redis_prefix}secondme:invites:",
            limit=settings.limit_secondme_invites_per_hour,
            window_seconds=INVITE_WINDOW_SECONDS,
        )
        rt.extensions[BOT_EXTENSION] = await attach_secondme_bot(
            bridge, replies, rule, stack, db=rt.db, invites=invites
        )
    rt.spawn("secondme-sweeper", _sweep_forever(replies, mentions))


async def _sweep_forever(replies: SecondMeReplies, mentions: CityMentions) -> None:
    while True:
        # Jitter, so that processes started together do not sweep in lockstep.
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS * random.uniform(0.8, 1.2))
        try:
            await replies.sweep_once()
            await mentions.sweep_once()
        except Exception:
            log.exception("Second Me sweep failed; trying again next round")
