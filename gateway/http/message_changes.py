"""A city user's changes to messages (SPEC §13): edit and delete their own, react.

PATCH / DELETE `/city/rooms/{room_id}/messages/{message_id}` (author only), and PUT /
DELETE `/city/rooms/{room_id}/messages/{message_id}/reactions/{key}` (the caller's
own reaction, idempotent). Each change is announced on the room's sockets and queued
for Matrix by the core (gateway.core.message_changes, gateway.core.reactions).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from gateway.core.auth import Principal, bearer_from_header, decode_user_token
from gateway.http.deps import CurrentUser, RuntimeDep, Services
from gateway.http.responses import JSONResponse
from gateway.http.schemas import (
    ID_MAX_CHARS,
    NO_NUL,
    USER_TOKEN,
    EditMessageBody,
    JSONOut,
    MessageOut,
    error_responses,
)

RoomIdPath = Annotated[str, Path(description="`room_city_{slug}`", json_schema_extra=NO_NUL)]
MessageIdPath = Annotated[
    str, Path(description="`m_city_…`", max_length=ID_MAX_CHARS, json_schema_extra=NO_NUL)
]
KeyPath = Annotated[
    str,
    Path(
        description="the reaction: an emoji or short text, 1-64 characters, no control "
        "characters (percent-encoded in the path; 422 `invalid_reaction_key`)",
        examples=["👍"],
        # What gateway/core/reactions.py accepts: not blank, no C0/C1 controls.
        json_schema_extra={"pattern": r"^(?=.*\S)[^\u0000-\u001f\u007f-\u009f]{1,64}$"},
    ),
]

router = APIRouter(prefix="/city/rooms", tags=["messages"], default_response_class=JSONOut)
_MESSAGE = "/{room_id}/messages/{message_id}"
_REACTION = _MESSAGE + "/reactions/{key:path}"


@router.patch(
    _MESSAGE,
    response_model=MessageOut,
    responses=error_responses(400, 401, 403, 404, 422, 429, 503),
    dependencies=[USER_TOKEN],
)
async def edit_message(
    room_id: RoomIdPath,
    message_id: MessageIdPath,
    body: EditMessageBody,
    user: CurrentUser,
    rt: RuntimeDep,
) -> JSONResponse:
    """Replace the body of your own message (403 `forbidden` for anyone else's).

    Announced as `room.message_edited`; in Matrix the ghost sends an `m.replace`.
    Counts against the per-user message limit (429 `rate_limited`).
    """
    assert user.user_id is not None
    message = await rt.message_changes.edit(room_id, message_id, user.user_id, body.body)
    return JSONResponse(message.as_json())


@router.delete(
    _MESSAGE,
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 422, 503),
    dependencies=[USER_TOKEN],
)
async def delete_message(
    room_id: RoomIdPath, message_id: MessageIdPath, user: CurrentUser, rt: RuntimeDep
) -> Response:
    """Delete your own message (403 `forbidden` for anyone else's): it leaves the
    history and the feed. Announced as `room.message_deleted`; redacted in Matrix."""
    assert user.user_id is not None
    await rt.message_changes.delete(room_id, message_id, user.user_id)
    return Response(status_code=204)


_REACTION_ROUTE: dict[str, Any] = {
    "response_model": MessageOut,
    "responses": error_responses(401, 404, 422, 429, 503),
    "dependencies": [USER_TOKEN],
}


async def _change_reaction(
    rt: Services, room_id: str, message_id: str, key: str, user: Principal, *, added: bool
) -> JSONResponse:
    assert user.user_id is not None
    change = rt.reactions.react if added else rt.reactions.unreact
    message = await change(room_id, message_id, key, user.user_id)
    return JSONResponse(message.as_json())


@router.put(_REACTION, **_REACTION_ROUTE)
async def add_reaction(
    room_id: RoomIdPath, message_id: MessageIdPath, key: KeyPath, user: CurrentUser, rt: RuntimeDep
) -> JSONResponse:
    """React with `key` (again: nothing changes). The message with its reactions.

    Announced as `room.reaction` (`added: true`); an `m.reaction` in Matrix.
    """
    return await _change_reaction(rt, room_id, message_id, key, user, added=True)


@router.delete(_REACTION, **_REACTION_ROUTE)
async def remove_reaction(
    room_id: RoomIdPath, message_id: MessageIdPath, key: KeyPath, user: CurrentUser, rt: RuntimeDep
) -> JSONResponse:
    """Take back your reaction `key` (none there: nothing changes). The message after.

    Announced as `room.reaction` (`added: false`); its `m.reaction` is redacted.
    """
    return await _change_reaction(rt, room_id, message_id, key, user, added=False)


def optional_viewer(request: Request, rt: Services) -> str | None:
    """The caller of a public read, for `me` in reactions: None without a bearer token;
    a bearer token that is sent must be valid (401 otherwise)."""
    token = bearer_from_header(request.headers.get("authorization"))
    if token is None:
        return None
    return decode_user_token(rt.settings.jwt_secret, token).user_id
