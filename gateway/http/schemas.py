"""Request bodies and response shapes at the HTTP edge; they are the OpenAPI document.

Every route declares its answers with these models (`response_model=` plus
`error_responses(...)`), so /openapi.json says exactly what the gateway sends. The
handlers return pre-rendered responses (orjson) and skip response validation on the
hot paths; tests/http/test_fuzz_openapi.py checks the answers against this document
with schemathesis (`--checks all`). docs/api.md describes the same contract in prose.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse as _StarletteJSON

from gateway.core.auth import USER_ID_RE
from gateway.core.ids import SLUG_RE
from gateway.core.messages import MAX_CLIENT_MSG_ID
from gateway.core.secondme.service import PROMPT_MAX_CHARS


class JSONOut(_StarletteJSON):
    """JSON rendered with orjson. A starlette `JSONResponse` subclass so that FastAPI
    documents each route's `response_model` (for any other class it writes `string`)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Human text the core accepts (gateway.core.text.clean_text): no NUL, and not blank —
# at least one character that is not NUL and not str.isspace() (which `.strip()` uses;
# spelled out, since `\s` differs between regex dialects).
_SPACE_OR_NUL = (
    r"\u0000\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a"
    r"\u2028\u2029\u202f\u205f\u3000"
)
TEXT_PATTERN = rf"^[^\u0000]*[^{_SPACE_OR_NUL}][^\u0000]*$"
# Ids and cursors: PostgreSQL text cannot hold NUL (422 `invalid_input`). Documented
# with `json_schema_extra`, so the check (and its error code) stays the core's.
NO_NUL: dict[str, Any] = {"pattern": r"^[^\u0000]*$"}
# The default of CITY_MESSAGE_MAX_CHARS; a deployment may configure less.
MESSAGE_MAX_CHARS = 4000
ROOM_NAME_MAX_CHARS = 100
ROOM_DESCRIPTION_MAX_CHARS = 1000
ID_MAX_CHARS = 128


# --- who may call -----------------------------------------------------------------------
# These only document the schemes (`auto_error=False`: they never refuse anything);
# the routes authenticate through gateway.core.auth, with the city's error shape.

USER_TOKEN = Security(
    HTTPBearer(
        auto_error=False,
        scheme_name="userToken",
        description="A city user's JWT (HS256, claim `sub` = `u_…`, `exp` required).",
    )
)
USER_OR_SERVICE_TOKEN = Security(
    HTTPBearer(
        auto_error=False,
        scheme_name="userOrServiceToken",
        description="A user JWT (for that user only) or CITY_INTERNAL_TOKEN (any user). "
        "sendBeacon, which cannot set headers, may put it in the body as `access_token`.",
    )
)


# --- errors ---------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    loc: list[str]
    msg: str


class ErrorOut(BaseModel):
    """Every error (SPEC §5): a stable snake_case `code` and a human `message`."""

    code: str = Field(description="stable, snake_case: what a program branches on")
    message: str = Field(description="for people; may change")
    details: list[ErrorDetail] | None = Field(
        default=None, description="422 `validation_error` only: where the request is wrong"
    )


class MatrixErrorOut(BaseModel):
    """The appservice routes' errors, in Matrix's shape (Synapse is their client)."""

    errcode: str = Field(examples=["M_FORBIDDEN"])
    error: str


_STATUS_TEXT = {
    400: "The body could not be parsed (not JSON)",
    401: "Missing, invalid or expired token",
    403: "The token may not do this",
    404: "No such resource",
    409: "Conflict with the current state",
    413: "Request body over the configured limit (CITY_MAX_REQUEST_BYTES)",
    415: "Unsupported Content-Type",
    422: "The request is well formed but its values are not acceptable",
    429: "Over a per-user limit; retry after `Retry-After` seconds",
    502: "An upstream service (Agents Core, the homeserver) failed",
    503: "A dependency (PostgreSQL, Redis, a service) is unavailable",
    504: "An upstream service timed out",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}}}


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorOut
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error statuses a route can give, all with `model`'s shape.

    413 is always included: the body limiter (gateway.http.limits) answers it for
    any route before the route runs.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 413}):
        entry: dict[str, Any] = {"model": model, "description": _STATUS_TEXT[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        elif status == 401 and model is ErrorOut:
            entry["headers"] = _WWW_AUTHENTICATE
        out[status] = entry
    return out


# --- rooms and messages --------------------------------------------------------------


class _Body(BaseModel):
    # Unknown fields are ignored: clients may send more than we read.
    model_config = ConfigDict(extra="ignore")


def _text(max_chars: int) -> dict[str, Any]:
    """Documented constraints of human text. Documented, not enforced by pydantic: the
    core checks them and answers with its own codes (`invalid_name`, `body_too_long`…)."""
    return {"minLength": 1, "maxLength": max_chars, "pattern": TEXT_PATTERN}


class CreateRoomBody(_Body):
    name: str = Field(json_schema_extra=_text(ROOM_NAME_MAX_CHARS))
    slug: str = Field(
        json_schema_extra={"pattern": SLUG_RE.pattern},
        description="the room id is `room_city_{slug}`",
    )
    description: str | None = Field(
        default=None, json_schema_extra=_text(ROOM_DESCRIPTION_MAX_CHARS)
    )


class PostMessageBody(_Body):
    body: str = Field(
        json_schema_extra=_text(MESSAGE_MAX_CHARS),
        description=f"at most CITY_MESSAGE_MAX_CHARS characters (default {MESSAGE_MAX_CHARS})",
    )
    client_msg_id: str | None = Field(
        default=None,
        json_schema_extra={"minLength": 1, "maxLength": MAX_CLIENT_MSG_ID, **NO_NUL},
        description="idempotency key: the same one again returns the first message (200)",
    )
    user_id: str | None = Field(
        default=None, description="optional; if present it must be the token's user (else 403)"
    )
    reply_to: str | None = Field(
        default=None,
        json_schema_extra={"minLength": 1, "maxLength": ID_MAX_CHARS, **NO_NUL},
        description="the id of the message this one replies to, in the same room "
        "(422 `invalid_reply_to`, 404 `reply_to_not_found`)",
    )


class RoomOut(BaseModel):
    id: str = Field(examples=["room_city_general"])
    slug: str
    name: str
    description: str | None
    is_default: bool
    members_online: int = Field(ge=0, description="distinct users connected to the room now")
    last_event: datetime = Field(description="the newest message's time, else creation")
    created_at: datetime
    matrix_room_id: str | None
    matrix_alias: str | None


class AttachmentOut(BaseModel):
    """A Matrix image, file, video or audio message's file (SPEC §13)."""

    kind: Literal["image", "file", "video", "audio"]
    name: str = Field(description="the file name (the message body is the caption or name)")
    mimetype: str | None = Field(description="as the sender declared it")
    size: int | None = Field(ge=0, description="bytes, as the sender declared it")
    url: str = Field(
        examples=["/city/media/example.org/AbCdEf"],
        description="GET it from this gateway: `/city/media/{server_name}/{media_id}`",
    )


class ReactionOut(BaseModel):
    key: str = Field(examples=["👍"], description="an emoji or short text, 1-64 characters")
    count: int = Field(ge=1)
    me: bool = Field(description="the caller is among the reactors")


class EditMessageBody(_Body):
    body: str = Field(
        json_schema_extra=_text(MESSAGE_MAX_CHARS),
        description=f"the new body; at most CITY_MESSAGE_MAX_CHARS characters "
        f"(default {MESSAGE_MAX_CHARS})",
    )


class MessageOut(BaseModel):
    id: str = Field(examples=["m_city_01J0000000000000000000000"])
    room_id: str
    author_user_id: str | None
    author_agent_id: str | None
    author_matrix_id: str | None
    body: str
    created_at: datetime
    reply_to: str | None = Field(
        description="the message this one replies to (same room; it may have been deleted)"
    )
    attachment: AttachmentOut | None = Field(description="a file from Matrix")
    edited_at: datetime | None = Field(description="the last edit (city or Matrix), if any")
    reactions: list[ReactionOut] = Field(
        description="per key, in the order first used; `me` is relative to the caller "
        "(false without a token, and in socket frames)"
    )


class RoomPageOut(BaseModel):
    room: RoomOut
    messages: list[MessageOut] = Field(description="the latest 50, oldest first")
    members_online: int = Field(ge=0)


class FeedEventOut(BaseModel):
    id: str = Field(examples=["evt_city_01J0000000000000000000000"])
    kind: str = Field(description="room_message, agent_reply or system")
    room_id: str | None
    user_id: str | None
    agent_id: str | None
    payload: dict[str, Any] = Field(description="body, snippet (≤ 140 chars), source")
    created_at: datetime


class StatsOut(BaseModel):
    rooms: int = Field(ge=0)
    messages_24h: int = Field(ge=0)
    users_online: int | None = Field(ge=0, description="online or away; null while Redis is down")


# --- presence ---------------------------------------------------------------------------

MAX_DEVICE_ID_CHARS = 128
PresenceStatus = Literal["online", "away", "offline"]


class HeartbeatBody(BaseModel):
    """The heartbeat body (application/json, or text/plain from sendBeacon). Only for
    the document: the endpoint parses the body by hand (gateway.http.presence)."""

    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(pattern=USER_ID_RE.pattern)
    status: Literal["online", "away", "unavailable", "offline"] | None = None
    device_id: str | None = Field(default=None, min_length=1, max_length=MAX_DEVICE_ID_CHARS)
    last_active_ago: int | None = Field(default=None, ge=0, description="milliseconds")
    access_token: str | None = Field(
        default=None, description="the token when no Authorization header can be set"
    )


class HeartbeatOut(BaseModel):
    user_id: str
    status: PresenceStatus
    matrix_user_id: str | None = Field(description="the user's ghost; null without the bridge")
    heartbeat_seconds: float = Field(description="when to send the next heartbeat")


class PresenceUserOut(BaseModel):
    user_id: str
    status: PresenceStatus
    last_active_ago: int = Field(ge=0, description="milliseconds")


class PresenceListOut(BaseModel):
    users: list[PresenceUserOut]


# --- Second Me --------------------------------------------------------------------------


class InvokeBody(_Body):
    prompt: str = Field(json_schema_extra=_text(PROMPT_MAX_CHARS))


class HistoryItemOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime


class InvokeOut(BaseModel):
    reply: str
    history: list[HistoryItemOut] = Field(description="your latest messages, oldest first")


# --- operations -------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str] = Field(description="`ok` for each dependency")


class NotReadyOut(ErrorOut):
    status: Literal["not_ready"]
    checks: dict[str, str] = Field(description="`ok`, or what went wrong, per dependency")


class EmptyOut(BaseModel):
    """`{}`: what the appservice API answers on success."""

    model_config = ConfigDict(extra="forbid")
