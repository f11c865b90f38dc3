"""WebSocket frames at the edge: parse what clients send, encode what we send.

Client frames are JSON objects with an `event` field. Parsing never raises
anything but `FrameError`, whose code and message become an `error` frame; the
connection stays open (SPEC §5). The helpers here are shared by every socket
(rooms now, presence later): `decode_object` + `validate` for any pydantic model,
`error_frame` / `encode` for the answers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError

from gateway.core.models import Message, ReactionChange

M = TypeVar("M")


# Close codes shared by the room and presence sockets (SPEC §7).
CLOSE_BAD_TOKEN = 4401
CLOSE_UNKNOWN_ROOM = 4404
# The user already has LIMIT_WEBSOCKETS_PER_USER sockets open (room + presence, SPEC §12).
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_UNAVAILABLE = 1011


class FrameError(Exception):
    """A client frame we cannot act on; becomes `{"event":"error","code","message"}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- client -> server ---------------------------------------------------------------


class _ClientFrame(BaseModel):
    # Strict: "room_id": 5 is an error, not "5". Unknown fields are ignored so that
    # clients may add correlation data without breaking older servers.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    # Optional everywhere: if present it must be the token's user (SPEC §4).
    user_id: StrictStr | None = None


class JoinFrame(_ClientFrame):
    event: Literal["room.join"]
    room_id: StrictStr = Field(min_length=1, max_length=200)


class LeaveFrame(_ClientFrame):
    event: Literal["room.leave"]
    room_id: StrictStr = Field(min_length=1, max_length=200)


class SendFrame(_ClientFrame):
    event: Literal["room.message.send"]
    room_id: StrictStr = Field(min_length=1, max_length=200)
    body: StrictStr
    client_msg_id: StrictStr | None = None
    # A message id of the same room (SPEC §13); checked by the core like REST's.
    reply_to: StrictStr | None = None


class PingFrame(_ClientFrame):
    event: Literal["ping"]


class TypingFrame(_ClientFrame):
    event: Literal["room.typing"]
    room_id: StrictStr = Field(min_length=1, max_length=200)
    typing: bool


RoomClientFrame = Annotated[
    JoinFrame | LeaveFrame | SendFrame | PingFrame | TypingFrame, Field(discriminator="event")
]
ROOM_FRAMES: TypeAdapter[JoinFrame | LeaveFrame | SendFrame | PingFrame | TypingFrame] = (
    TypeAdapter(RoomClientFrame)
)
ROOM_EVENTS = frozenset({"room.join", "room.leave", "room.message.send", "ping", "room.typing"})


def decode_object(raw: str | bytes) -> dict[str, Any]:
    """The frame as a JSON object with a string `event`, or FrameError."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError("invalid_json", "frame is not valid JSON") from None
    if not isinstance(value, dict):
        raise FrameError("invalid_frame", "frame must be a JSON object")
    event = value.get("event")
    if not isinstance(event, str):
        raise FrameError("invalid_frame", "frame needs a string 'event'")
    return value


def validate(adapter: TypeAdapter[M], value: dict[str, Any], known_events: frozenset[str]) -> M:
    """Validate a decoded frame against a (discriminated) model, or FrameError."""
    event = value["event"]
    if event not in known_events:
        raise FrameError("unknown_event", f"unknown event {event[:64]!r}")
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError("invalid_frame", f"{where}: {first['msg']}") from None


def parse_room_frame(
    raw: str | bytes,
) -> JoinFrame | LeaveFrame | SendFrame | PingFrame | TypingFrame:
    return validate(ROOM_FRAMES, decode_object(raw), ROOM_EVENTS)


# --- server -> client -----------------------------------------------------------------
# Frames are encoded once (orjson, datetimes as RFC 3339 like the REST API) and the
# resulting str is written to every socket that should get it.


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def error_frame(code: str, message: str) -> str:
    return encode({"event": "error", "code": code, "message": message})


PONG_FRAME = encode({"event": "pong"})


def room_message_frame(message: Message) -> str:
    return encode(
        {"event": "room.message", "room_id": message.room_id, "message": message.as_json()}
    )


def room_message_edited_frame(message: Message) -> str:
    return encode(
        {"event": "room.message_edited", "room_id": message.room_id, "message": message.as_json()}
    )


def room_message_deleted_frame(room_id: str, message_id: str) -> str:
    return encode({"event": "room.message_deleted", "room_id": room_id, "message_id": message_id})


def room_reaction_frame(change: ReactionChange) -> str:
    """`room.reaction {room_id, message_id, key, count, user_id | matrix_user_id, added}`."""
    return encode({"event": "room.reaction", **change.as_json()})


def room_join_frame(room_id: str, user_id: str) -> str:
    return encode({"event": "room.join", "room_id": room_id, "user_id": user_id})


def room_leave_frame(room_id: str, user_id: str) -> str:
    return encode({"event": "room.leave", "room_id": room_id, "user_id": user_id})


def room_presence_frame(room_id: str, user_id: str, status: str) -> str:
    return encode(
        {"event": "room.presence", "room_id": room_id, "user_id": user_id, "status": status}
    )


def room_typing_frame(
    room_id: str, typing: bool, *, user_id: str | None = None, matrix_user_id: str | None = None
) -> str:
    """`room.typing` for a city user (`user_id`) or a Matrix user (`matrix_user_id`)."""
    who = {"user_id": user_id} if user_id is not None else {"matrix_user_id": matrix_user_id}
    return encode({"event": "room.typing", "room_id": room_id, **who, "typing": typing})


def matrix_presence_frame(room_id: str, matrix_user_id: str, status: str) -> str:
    """`room.presence` of a Matrix user (status in Matrix's names)."""
    return encode(
        {
            "event": "room.presence",
            "room_id": room_id,
            "matrix_user_id": matrix_user_id,
            "status": status,
        }
    )
