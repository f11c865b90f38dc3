"""How a Matrix message's content reads as a city message body."""

from __future__ import annotations

from typing import Any

from gateway.core.media import attachment_from_content, file_name

_MEDIA = {"m.image": "image", "m.file": "file", "m.audio": "audio", "m.video": "video"}


def message_body(content: dict[str, Any], max_chars: int) -> str | None:
    """The city body for an m.room.message content, or None if it has none."""
    msgtype = content.get("msgtype")
    body = content.get("body")
    if not isinstance(msgtype, str) or not isinstance(body, str):
        return None
    if msgtype in _MEDIA:
        text = _media(msgtype, content, body)
    elif msgtype == "m.emote":
        text = f"* {_strip_reply_fallback(content, body)}"
    else:
        # m.text, m.notice, and anything newer that carries a readable body.
        text = _strip_reply_fallback(content, body)
    text = text.replace("\x00", "")
    if not text.strip():
        return None
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def _media(msgtype: str, content: dict[str, Any], body: str) -> str:
    """The caption, else the file name: the file itself is the message's `attachment`
    (gateway.core.media.attachment_from_content). Matrix v1.10: `body` is a caption
    when `filename` is present and differs from it."""
    kind = _MEDIA[msgtype]
    name = file_name(content) or kind
    if not isinstance(content.get("url"), str) and isinstance(content.get("file"), dict):
        # End-to-end encrypted media: the gateway cannot decrypt it (mautrix bridges
        # without encryption support do the same: say so instead of dropping it).
        return f"[encrypted {kind}: {name}] an encrypted attachment is not available in the city"
    if attachment_from_content(content) is None:
        return f"[{kind}] {name}"  # no usable mxc:// URI: the name is all there is
    filename = content.get("filename")
    if isinstance(filename, str) and filename.strip() and body.strip() != filename.strip():
        return body  # a caption
    return name


def _strip_reply_fallback(content: dict[str, Any], body: str) -> str:
    """Drop the quoted fallback a reply's body starts with (`> <@user> original`,
    then `> ` lines, then a blank line), as mautrix's trim_reply_fallback does.

    Only in replies, and only when it has the fallback's shape (a quoted `<sender>`
    first): a message that merely starts with a quote keeps it. The HTML fallback
    (`<mx-reply>…</mx-reply>` in formatted_body) never reaches the city, which keeps
    only the plain body.
    """
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or "m.in_reply_to" not in relates:
        return body
    if not (body.startswith("> <") or body.startswith("> * <")) or "\n" not in body:
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and (lines[i].startswith("> ") or lines[i] == ">"):
        i += 1
    if i < len(lines) and not lines[i].strip():
        i += 1  # the blank line that ends the fallback
    rest = "\n".join(lines[i:])
    return rest if rest.strip() else body
