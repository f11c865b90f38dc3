"""Plain, frozen records passed between storage, rules and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    slug: str
    name: str
    description: str | None
    is_default: bool
    created_at: datetime
    created_by: str | None
    matrix_room_id: str | None
    matrix_alias: str | None
    last_event: datetime

    def as_json(self, members_online: int = 0) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "is_default": self.is_default,
            "members_online": members_online,
            "last_event": self.last_event,
            "created_at": self.created_at,
            "matrix_room_id": self.matrix_room_id,
            "matrix_alias": self.matrix_alias,
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    room_id: str
    author_user_id: str | None
    author_agent_id: str | None
    author_matrix_id: str | None
    body: str
    created_at: datetime
    seq: int
    matrix_event_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "author_user_id": self.author_user_id,
            "author_agent_id": self.author_agent_id,
            "author_matrix_id": self.author_matrix_id,
            "body": self.body,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: str
    kind: str
    room_id: str | None
    user_id: str | None
    agent_id: str | None
    payload: dict[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "room_id": self.room_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "payload": self.payload,
            "created_at": self.created_at,
        }
