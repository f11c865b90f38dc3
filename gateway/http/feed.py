"""/city/feed and /city/stats for the City Home dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.http.deps import RuntimeDep
from gateway.http.responses import JSONResponse
from gateway.http.schemas import ID_MAX_CHARS, NO_NUL, FeedEventOut, JSONOut, error_responses

router = APIRouter(prefix="/city", tags=["feed"], default_response_class=JSONOut)


@router.get("/feed", response_model=list[FeedEventOut], responses=error_responses(404, 422, 503))
async def feed(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    before: Annotated[str | None, Query(max_length=ID_MAX_CHARS, json_schema_extra=NO_NUL)] = None,
) -> JSONResponse:
    events = await rt.feed.latest(limit, before)
    return JSONResponse([e.as_json() for e in events])
