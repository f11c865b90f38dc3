"""/city/rooms: list, create, read, and post messages."""

from __future__ import annotations

import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request

from gateway.core.auth import authenticate, bearer_from_header
from gateway.core.errors import AppError, forbidden
from gateway.core.messages import Author
from gateway.http.deps import CurrentUser, RuntimeDep, Services
from gateway.http.fastpath import FastRoute
from gateway.http.message_changes import optional_viewer
from gateway.http.responses import JSONResponse
from gateway.http.schemas import (
    ID_MAX_CHARS,
    NO_NUL,
    USER_TOKEN,
    CreateRoomBody,
    JSONOut,
    MessageOut,
    PostMessageBody,
    RoomOut,
    RoomPageOut,
    error_responses,
)

RoomIdPath = Annotated[str, Path(description="`room_city_{slug}`", json_schema_extra=NO_NUL)]
router = APIRouter(prefix="/city/rooms", tags=["rooms"], default_response_class=JSONOut)


@router.get("", response_model=list[RoomOut], responses=error_responses(422, 503))
async def list_rooms(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JSONResponse:
    rooms = await rt.rooms.list_rooms(limit, offset)
    return JSONResponse([room.as_json(online) for room, online in rooms])


@router.post(
    "",
    response_model=RoomOut,
    status_code=201,
    responses=error_responses(400, 401, 409, 422, 429, 503),
    dependencies=[USER_TOKEN],
)
async def create_room(body: CreateRoomBody, user: CurrentUser, rt: RuntimeDep) -> JSONResponse:
    room = await rt.rooms.create(
        name=body.name, slug=body.slug, description=body.description, created_by=user.user_id
    )
    return JSONResponse(room.as_json(0), status_code=201)


@router.get("/{room_id}", response_model=RoomPageOut, responses=error_responses(401, 404, 422, 503))
async def get_room(room_id: RoomIdPath, request: Request, rt: RuntimeDep) -> JSONResponse:
    """The room and its latest messages. A bearer token is optional; with one (it must
    be valid: else 401), reactions' `me` is relative to its user."""
    viewer = optional_viewer(request, rt)
    page = await rt.rooms.page(room_id)
    messages = await rt.reactions.attach(page.messages, viewer)
    return JSONResponse(
        {
            "room": page.room.as_json(page.members_online),
            "messages": [m.as_json() for m in messages],
            "members_online": page.members_online,
        }
    )


@router.get(
    "/{room_id}/messages",
    response_model=list[MessageOut],
    responses=error_responses(401, 404, 422, 503),
)
async def list_messages(
    room_id: RoomIdPath,
    request: Request,
    rt: RuntimeDep,
    before: Annotated[str | None, Query(max_length=ID_MAX_CHARS, json_schema_extra=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    """An older page, oldest first; a bearer token is optional, as for the room."""
    viewer = optional_viewer(request, rt)
    messages = await rt.messages.history(room_id, before, limit)
    messages = await rt.reactions.attach(messages, viewer)
    return JSONResponse([m.as_json() for m in messages])


@router.post(
    "/{room_id}/messages",
    response_model=MessageOut,
    status_code=201,
    responses={
        200: {"model": MessageOut, "description": "a retry with a known client_msg_id"},
        **error_responses(401, 403, 404, 409, 415, 422, 429, 503),
    },
    dependencies=[USER_TOKEN],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": PostMessageBody.model_json_schema()}},
        }
    },
)
async def post_message(room_id: RoomIdPath, request: Request) -> JSONResponse:
    """Post as the token's user; the same `client_msg_id` again returns the first (200).

    Normally answered by `FastPaths` (gateway.http.fastpath) before this route; both
    call `handle_post_message`, so the answers are the same.
    """
    status, answer = await handle_post_message(
        request.app.state.runtime,
        (room_id,),
        request.headers.get("content-type"),
        request.headers.get("authorization"),
        await request.body(),
    )
    return JSONResponse(answer, status_code=status)


async def handle_post_message(
    rt: Services,
    params: tuple[str, ...],
    content_type: str | None,
    authorization: str | None,
    raw: bytes,
) -> tuple[int, dict[str, Any]]:
    """The whole POST: authenticate, parse the body by hand (orjson), store, answer."""
    (room_id,) = params
    user = authenticate(
        bearer_from_header(authorization),
        jwt_secret=rt.settings.jwt_secret,
        internal_token=None,
        allow_service=False,
    )
    body, client_msg_id, body_user, reply_to = _parse_message_body(content_type, raw)
    if body_user is not None and body_user != user.user_id:
        # SPEC §4: a user acts only as themself; a body naming someone else is refused,
        # not silently posted as the caller.
        raise forbidden("user_id is not the token's user")
    result = await rt.messages.post(
        room_id,
        Author(user_id=user.user_id, display_name=user.name),
        body,
        client_msg_id=client_msg_id,
        reply_to=reply_to,
    )
    return (201 if result.created else 200), result.message.as_json()


POST_MESSAGE_ROUTE = FastRoute(
    "/city/rooms/{room_id}/messages",
    re.compile(r"/city/rooms/([^/]+)/messages"),
    handle_post_message,
)


def _parse_message_body(
    content_type: str | None, raw: bytes
) -> tuple[str, str | None, object | None, str | None]:
    """(body, client_msg_id, user_id as sent — optional, checked by the caller, reply_to)."""
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise AppError(415, "unsupported_media_type", "send the body as application/json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AppError(422, "validation_error", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise AppError(422, "validation_error", "the body must be a JSON object")
    body = data.get("body")
    if not isinstance(body, str):
        raise AppError(422, "validation_error", "body: a string is required")
    client_msg_id = data.get("client_msg_id")
    if client_msg_id is not None and not isinstance(client_msg_id, str):
        raise AppError(422, "validation_error", "client_msg_id must be a string")
    reply_to = data.get("reply_to")
    if reply_to is not None and not isinstance(reply_to, str):
        raise AppError(422, "invalid_reply_to", "reply_to must be a message id (a string)")
    return body, client_msg_id, data.get("user_id"), reply_to
