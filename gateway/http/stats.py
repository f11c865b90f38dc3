"""/city/stats: three numbers for the City Home dashboard.

A dashboard prefers partial data to none: when Redis is down `users_online` is
`null` and the answer is still 200 (rooms and messages come from PostgreSQL).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from gateway.core.errors import AppError
from gateway.core.storage.messages import count_since_hours
from gateway.core.storage.rooms import count_rooms
from gateway.http.deps import RuntimeDep, Services
from gateway.http.responses import JSONResponse
from gateway.http.schemas import JSONOut, StatsOut, error_responses

router = APIRouter(prefix="/city", tags=["feed"], default_response_class=JSONOut)


async def _users_online(rt: Services) -> int | None:
    try:
        return await rt.presence.count_online()
    except AppError:
        return None


@router.get("/stats", response_model=StatsOut, responses=error_responses(503))
async def stats(rt: RuntimeDep) -> JSONResponse:
    rooms, messages_24h, users_online = await asyncio.gather(
        count_rooms(rt.db), count_since_hours(rt.db, 24), _users_online(rt)
    )
    return JSONResponse(
        {"rooms": rooms, "messages_24h": messages_24h, "users_online": users_online}
    )
