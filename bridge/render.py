"""How a Matrix message's content reads as a city message body."""

from __future__ import annotations

from typing import Any

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
    filename = content.get("filename")
    name = filename if isinstance(filename, str) and filename.strip() else body
    url = content.get("url")
    if not isinstance(url, str):
        encrypted = content.get("file")
        url = encrypted.get("url") if isinstance(encrypted, dict) else None
    link = f" {url}" if isinstance(url, str) and url.startswith("mxc://") else ""
    return f"[{_MEDIA[msgtype]}] {name.strip() or msgtype}{link}"


def _strip_reply_fallback(content: dict[str, Any], body: str) -> str:
    """Drop the `> <@user> quoted` lines older clients prepend to replies."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, dict) or "m.in_reply_to" not in relates:
        return body
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i == 0:
        return body
    rest = "\n".join(lines[i:]).lstrip("\n")
    return rest or body
