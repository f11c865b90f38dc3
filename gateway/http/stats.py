"""/city/stats: three numbers for the City Home dashboard.

A dashboard prefers partial data to none: when Redis is down `users_online` is
`null` and the answer is still 200 (rooms and messages come from PostgreSQL).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.app.runtime import Runtime
from gateway.core.errors import AppError
from gateway.core.presence.service import presence_of
from gateway.core.storage.messages import count_since_hours
from gateway.core.storage.rooms import count_rooms
from gateway.http.deps import RuntimeDep
from gateway.http.schemas import ERRORS
from gateway.infra.jsonio import JSONResponse

router = APIRouter(prefix="/city", tags=["feed"], responses=ERRORS)


class StatsOut(BaseModel):
    rooms: int
    messages_24h: int
    users_online: int | None = Field(description="online or away; null while Redis is down")


async def _users_online(rt: Runtime) -> int | None:
    try:
        return await presence_of(rt).count_online()
    except AppError:
        return None


@router.get("/stats", response_model=StatsOut)
async def stats(rt: RuntimeDep) -> JSONResponse:
    rooms, messages_24h, users_online = await asyncio.gather(
        count_rooms(rt.db), count_since_hours(rt.db, 24), _users_online(rt)
    )
    return JSONResponse(
        {"rooms": rooms, "messages_24h": messages_24h, "users_online": users_online}
    )
