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

import asyncpg

from gateway.core.events import CityHooks
from gateway.core.messages import MessageService
from gateway.core.models import Message
from gateway.core.secondme.ports import MatrixReplyChannel
from gateway.core.secondme.replies import LEASE_MARGIN_SECONDS, SecondMeReplies
from gateway.core.secondme.service import SecondMeService
from gateway.core.storage import secondme as sql
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

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
        self.replies = replies
        self._db = db
        self.rule = rule

    async def on_message(self, message: Message) -> None:
        """`message_posted` listener: must return at once (it runs inside the post)."""
        if not self._is_city_user_message(message) or not self.rule.mentions(message.body):
            return
        assert message.author_user_id is not None
        self.replies.submit(
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
                self.replies.handle(
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

    async def sweep_forever(self) -> None:
        """Take over abandoned replies and answer missed mentions, until cancelled."""
        while True:
            # Jitter, so that processes started together do not sweep in lockstep.
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS * random.uniform(0.8, 1.2))
            try:
                await self.replies.sweep_once()
                await self.sweep_once()
            except Exception:
                log.exception("Second Me sweep failed; trying again next round")

    @staticmethod
    def _is_city_user_message(message: Message) -> bool:
        return (
            message.author_user_id is not None
            and message.author_agent_id is None
            and message.author_matrix_id is None
        )


def start_room_replies(
    settings: Settings,
    *,
    db: asyncpg.Pool,
    service: SecondMeService,
    messages: MessageService,
    hooks: CityHooks,
    matrix: MatrixReplyChannel | None,
    stack: AsyncExitStack,
) -> CityMentions:
    """Starter: the replies engine and city mentions (listening to `message_posted`).

    `matrix` is the bridge's channel for Matrix rooms that are not bridged (None
    without a bridge). The caller runs `sweep_forever()` of the result.
    """
    replies = SecondMeReplies(
        db=db,
        service=service,
        messages=messages,
        hooks=hooks,
        agent_id=settings.secondme_agent_id,
        max_chars=settings.city_message_max_chars,
        lease_seconds=settings.agents_core_timeout + LEASE_MARGIN_SECONDS,
        matrix=matrix,
    )
    stack.push_async_callback(replies.aclose)
    mentions = CityMentions(replies, db, MentionRule(settings.secondme_matrix_localpart))
    hooks.message_posted.append(mentions.on_message)
    return mentions
