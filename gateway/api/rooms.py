"""/city/rooms: list, create, read, and post messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.schemas import (
    ERRORS,
    CreateRoomBody,
    MessageOut,
    PostMessageBody,
    RoomOut,
    RoomPageOut,
)
from gateway.deps import CurrentUser, RuntimeDep
from gateway.jsonio import JSONResponse
from gateway.messages import Author

router = APIRouter(prefix="/city/rooms", tags=["rooms"], responses=ERRORS)


@router.get("", response_model=list[RoomOut])
async def list_rooms(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JSONResponse:
    rooms = await rt.rooms.list_rooms(limit, offset)
    return JSONResponse([room.as_json(online) for room, online in rooms])


@router.post("", response_model=RoomOut, status_code=201)
async def create_room(body: CreateRoomBody, user: CurrentUser, rt: RuntimeDep) -> JSONResponse:
    room = await rt.rooms.create(
        name=body.name, slug=body.slug, description=body.description, created_by=user.user_id
    )
    return JSONResponse(room.as_json(0), status_code=201)


@router.get("/{room_id}", response_model=RoomPageOut)
async def get_room(room_id: str, rt: RuntimeDep) -> JSONResponse:
    page = await rt.rooms.page(room_id)
    return JSONResponse(
        {
            "room": page.room.as_json(page.members_online),
            "messages": [m.as_json() for m in page.messages],
            "members_online": page.members_online,
        }
    )


@router.get("/{room_id}/messages", response_model=list[MessageOut])
async def list_messages(
    room_id: str,
    rt: RuntimeDep,
    before: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    messages = await rt.messages.history(room_id, before, limit)
    return JSONResponse([m.as_json() for m in messages])


@router.post(
    "/{room_id}/messages",
    response_model=MessageOut,
    status_code=201,
    responses={200: {"model": MessageOut, "description": "a retry with a known client_msg_id"}},
)
async def post_message(
    room_id: str, body: PostMessageBody, user: CurrentUser, rt: RuntimeDep
) -> JSONResponse:
    result = await rt.messages.post(
        room_id,
        Author(user_id=user.user_id, display_name=user.name),
        body.body,
        client_msg_id=body.client_msg_id,
    )
    return JSONResponse(result.message.as_json(), status_code=201 if result.created else 200)
