"""/city/feed and /city/stats for the City Home dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.http.deps import RuntimeDep
from gateway.http.schemas import ERRORS, FeedEventOut
from gateway.infra.jsonio import JSONResponse

router = APIRouter(prefix="/city", tags=["feed"], responses=ERRORS)


@router.get("/feed", response_model=list[FeedEventOut])
async def feed(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    before: Annotated[str | None, Query(max_length=128)] = None,
) -> JSONResponse:
    events = await rt.feed.latest(limit, before)
    return JSONResponse([e.as_json() for e in events])
