"""Identifiers: prefixed ULIDs, sortable by creation time."""

from __future__ import annotations

import re

from ulid import ULID

ROOM_PREFIX = "room_city_"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,63}$")


def new_message_id() -> str:
    return f"m_city_{ULID()}"


def new_feed_event_id() -> str:
    return f"evt_city_{ULID()}"


def new_prefixed_id(prefix: str) -> str:
    return f"{prefix}{ULID()}"


def room_id_for_slug(slug: str) -> str:
    return f"{ROOM_PREFIX}{slug}"


def slug_from_room_id(room_id: str) -> str | None:
    if not room_id.startswith(ROOM_PREFIX):
        return None
    slug = room_id[len(ROOM_PREFIX) :]
    return slug if SLUG_RE.match(slug) else None
