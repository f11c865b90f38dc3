"""Request bodies and response shapes at the HTTP edge (also feed the OpenAPI docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateRoomBody(_Body):
    name: str
    slug: str
    description: str | None = None


class PostMessageBody(_Body):
    body: str
    client_msg_id: str | None = None
    # Optional; if present it must be the caller (else 403 `forbidden`, SPEC §4).
    user_id: str | None = None


class RoomOut(BaseModel):
    id: str
    slug: str
    name: str
    description: str | None
    is_default: bool
    members_online: int
    last_event: datetime
    created_at: datetime
    matrix_room_id: str | None
    matrix_alias: str | None


class MessageOut(BaseModel):
    id: str
    room_id: str
    author_user_id: str | None
    author_agent_id: str | None
    author_matrix_id: str | None
    body: str
    created_at: datetime


class RoomPageOut(BaseModel):
    room: RoomOut
    messages: list[MessageOut]
    members_online: int


class FeedEventOut(BaseModel):
    id: str
    kind: str
    room_id: str | None
    user_id: str | None
    agent_id: str | None
    payload: dict[str, Any]
    created_at: datetime


class ErrorOut(BaseModel):
    code: str
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 429)
}
