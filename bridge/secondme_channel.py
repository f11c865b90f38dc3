"""Second Me's answers in Matrix rooms that are not bridged (DMs, private groups).

The core's `MatrixReplyChannel` port (gateway.core.secondme.ports): the replies
engine asks it for a room's context and sends its answer through it. It needs only
the bridge, so it is built before the replies engine, and the Second Me bot
(bridge.secondme_bot), which listens to the inbox, after it.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from bridge.matrix import CS
from bridge.service import Bridge
from gateway.core.secondme.ports import HistoryItem
from gateway.core.secondme.service import shared_room_item
from gateway.core.storage.secondme import ReplyClaim

# Event content key naming the event a Second Me DM reply answers.
TRIGGER_KEY = "city.secondme_trigger"
MESSAGE_TYPE = "m.room.message"


def trigger_id(event_id: str) -> str:
    """The reply claim's id for a Matrix event."""
    return f"matrix:{event_id}"


def dm_txn_id(claim: ReplyClaim) -> str:
    """Stable per trigger, so a retried send (after a take-over) is the same event."""
    return "secondme_" + hashlib.sha256(claim.trigger_id.encode()).hexdigest()[:32]


class SecondMeChannel:
    """Reads and writes Matrix rooms as `@secondme` for the replies engine."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.user_id = bridge.names.secondme

    async def room_context(self, claim: ReplyClaim, limit: int) -> list[HistoryItem]:
        """The room's messages before the question, oldest first.

        Read as Second Me, so it sees what the room's members see, and no more.
        """
        if limit <= 0:
            return []
        event_id = claim.trigger_id.removeprefix("matrix:")
        data = await self._bridge.matrix.request(
            "GET",
            f"{CS}/rooms/{quote(claim.room_id, safe='')}/context/{quote(event_id, safe='')}",
            user_id=self.user_id,
            # Synapse splits `limit` between before and after the event.
            params={"limit": str(2 * limit), "filter": json.dumps({"types": [MESSAGE_TYPE]})},
        )
        before = data.get("events_before")
        events = [e for e in before if isinstance(e, dict)] if isinstance(before, list) else []
        items = []
        for event in reversed(events[:limit]):  # newest first → oldest first
            content = event.get("content")
            sender = event.get("sender")
            if not isinstance(content, dict) or not isinstance(sender, str):
                continue
            body = content.get("body")
            if event.get("type") != MESSAGE_TYPE or not isinstance(body, str) or not body:
                continue
            item = shared_room_item(sender, body, own=sender == self.user_id)
            if item is not None:
                items.append(item)
        return items

    async def send_dm(self, claim: ReplyClaim, text: str) -> str:
        """Post into the Matrix room as @secondme; returns the event id."""
        return await self._bridge.send_text(
            claim.room_id,
            text,
            as_user=self.user_id,
            # Bots answer with notices: other bots never answer those (no loops).
            msgtype="m.notice",
            txn_id=dm_txn_id(claim),
            extra_content={TRIGGER_KEY: claim.trigger_id.removeprefix("matrix:")},
        )
