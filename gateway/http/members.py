"""GET /city/rooms/{room_id}/members: who is in a room, on both sides (SPEC §13)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from gateway.http.deps import RuntimeDep
from gateway.http.responses import JSONResponse
from gateway.http.schemas import NO_NUL, JSONOut, error_responses

router = APIRouter(prefix="/city/rooms", tags=["rooms"], default_response_class=JSONOut)


class MemberOut(BaseModel):
    """A city user (`user_id`) connected to the room now, or a Matrix user
    (`matrix_user_id`) joined to its Matrix room; exactly one of the two is present."""

    user_id: str | None = Field(None, description="a city user")
    matrix_user_id: str | None = Field(None, description="a real Matrix user (not a ghost)")
    display_name: str | None
    status: Literal["online", "away", "unavailable", "offline"] = Field(
        description="city users: online | away; Matrix users, in Matrix's names:"
        " online | unavailable | offline"
    )


class MembersOut(BaseModel):
    members: list[MemberOut]


@router.get(
    "/{room_id}/members", response_model=MembersOut, responses=error_responses(404, 422, 503)
)
async def room_members(
    room_id: Annotated[str, Path(description="`room_city_{slug}`", json_schema_extra=NO_NUL)],
    rt: RuntimeDep,
) -> JSONResponse:
    members = await rt.members.members(room_id)
    return JSONResponse({"members": [m.as_json() for m in members]})
