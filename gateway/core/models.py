"""Plain, frozen records passed between storage, rules and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal


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


AttachmentKind = Literal["image", "file", "video", "audio"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A Matrix file a message carries; served by GET /city/media/{server_name}/{media_id}.

    Stored as jsonb (`as_stored`); `server_name` and `media_id` are the parts of its
    mxc:// URI, checked against gateway.core.media's patterns before they are stored.
    """

    kind: AttachmentKind
    name: str
    mimetype: str | None
    size: int | None  # as the sender declared it
    server_name: str
    media_id: str

    @property
    def url(self) -> str:
        return f"/city/media/{self.server_name}/{self.media_id}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "mimetype": self.mimetype,
            "size": self.size,
            "url": self.url,
        }

    def as_stored(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "mimetype": self.mimetype,
            "size": self.size,
            "server_name": self.server_name,
            "media_id": self.media_id,
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> Attachment:
        return cls(
            kind=data["kind"],
            name=data["name"],
            mimetype=data.get("mimetype"),
            size=data.get("size"),
            server_name=data["server_name"],
            media_id=data["media_id"],
        )


@dataclass(frozen=True, slots=True)
class ReactionSummary:
    """One key's reactions on a message; `me`: the viewer is among them."""

    key: str
    count: int
    me: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "count": self.count, "me": self.me}


@dataclass(frozen=True, slots=True)
class ReactionChange:
    """A reaction added or removed: `count` is the key's count on the message after it.
    Exactly one of `user_id` (a city user) and `matrix_user_id` is set."""

    room_id: str
    message_id: str
    key: str
    count: int
    added: bool
    user_id: str | None = None
    matrix_user_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        who = (
            {"user_id": self.user_id}
            if self.user_id is not None
            else {"matrix_user_id": self.matrix_user_id}
        )
        return {
            "room_id": self.room_id,
            "message_id": self.message_id,
            "key": self.key,
            "count": self.count,
            **who,
            "added": self.added,
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
    reply_to: str | None = None  # a message id in the same room (SPEC §13)
    attachment: Attachment | None = None  # media from Matrix (SPEC §13)
    edited_at: datetime | None = None  # the last edit, from either side (SPEC §13)
    # [{key, count, me}] (SPEC §13): filled in where a page is read (gateway.core.reactions)
    reactions: tuple[ReactionSummary, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "author_user_id": self.author_user_id,
            "author_agent_id": self.author_agent_id,
            "author_matrix_id": self.author_matrix_id,
            "body": self.body,
            "created_at": self.created_at,
            "reply_to": self.reply_to,
            "attachment": self.attachment.as_json() if self.attachment else None,
            "edited_at": self.edited_at,
            "reactions": [r.as_json() for r in self.reactions],
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
