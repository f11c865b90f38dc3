"""Replies across the bridge (SPEC §13): `reply_to` ⇄ `m.relates_to.m.in_reply_to`.

Matrix → city: a reply whose `m.in_reply_to` names a bridged message (of the same
room) gets that city message as `reply_to`; its quoted fallback is removed from the
body by bridge/render.py.

City → Matrix: a reply is sent with `m.in_reply_to` naming the original's Matrix
event, plus the rich-reply fallback (`> <@sender> original` in `body`, an
`<mx-reply>` block in `formatted_body`). Matrix v1.13 removed fallbacks from the spec
(MSC2781) and current Element ignores them, but older clients show only the body;
mautrix bridges still send them for that reason, and so do we. The outbox sends a
room's messages in order, so the original (earlier in the room) already has its
event id; one that never reached Matrix (posted before the bridge, or refused by
Synapse) makes the reply a plain message.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from gateway.core.messages import MessageService
from gateway.core.models import Message
from gateway.core.storage import Executor

FALLBACK_MAX_CHARS = 500  # of the original, quoted (mautrix cuts long quotes too)


def in_reply_to(content: dict[str, Any]) -> str | None:
    """The event id a Matrix message replies to, if it is a real reply.

    A threaded message that only "falls back" to a reply for thread-unaware clients
    (`is_falling_back`) is not one.
    """
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or relates.get("is_falling_back") is True:
        return None
    target = relates.get("m.in_reply_to")
    event_id = target.get("event_id") if isinstance(target, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


async def city_reply_to(
    messages: MessageService, db: Executor, content: dict[str, Any], city_room_id: str
) -> str | None:
    """The city message a Matrix reply answers (bridged, in the same room), or None."""
    event_id = in_reply_to(content)
    if event_id is None:
        return None
    original = await messages.find_by_matrix_event(event_id, db=db)
    if original is None or original.room_id != city_room_id:
        return None
    return original.id


def with_reply(
    content: dict[str, Any],
    *,
    matrix_room_id: str,
    original: Message,
    original_event_id: str,
    original_sender: str,
    mention: bool,
) -> dict[str, Any]:
    """`content` (an m.text / m.notice) as a rich reply to the original's event.

    `mention`: the original's sender is a real Matrix user, to be notified as Element
    does for replies (`m.mentions`, Matrix v1.7 intentional mentions).
    """
    body = str(content.get("body", ""))
    quoted = _shorten(original.body)
    lines = quoted.split("\n")
    fallback = "\n".join(
        [f"> <{original_sender}> {lines[0]}", *(f"> {line}" for line in lines[1:])]
    )
    link = (
        f"https://matrix.to/#/{quote(matrix_room_id, safe='!:')}/"
        f"{quote(original_event_id, safe='$:')}"
    )
    user_link = f"https://matrix.to/#/{quote(original_sender, safe='@:')}"
    mx_reply = (
        f'<mx-reply><blockquote><a href="{html.escape(link)}">In reply to</a> '
        f'<a href="{html.escape(user_link)}">{html.escape(original_sender)}</a><br />'
        f"{_html_lines(quoted)}</blockquote></mx-reply>"
    )
    reply = {
        **content,
        "body": f"{fallback}\n\n{body}",
        "format": "org.matrix.custom.html",
        "formatted_body": mx_reply + _html_lines(body),
        "m.relates_to": {"m.in_reply_to": {"event_id": original_event_id}},
    }
    if mention:
        reply["m.mentions"] = {"user_ids": [original_sender]}
    return reply


def _shorten(text: str) -> str:
    return text if len(text) <= FALLBACK_MAX_CHARS else text[: FALLBACK_MAX_CHARS - 1] + "…"


def _html_lines(text: str) -> str:
    return html.escape(text).replace("\n", "<br />")
