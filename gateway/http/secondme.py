"""/secondme: talk to your Second Me and read your conversation with it.

The user is always the token's subject; there is no way to name another user, so
one user's history is never visible to another.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.http.deps import CurrentUser, RuntimeDep
from gateway.http.responses import JSONResponse
from gateway.http.schemas import (
    USER_TOKEN,
    HistoryItemOut,
    InvokeBody,
    InvokeOut,
    JSONOut,
    error_responses,
)

router = APIRouter(
    prefix="/secondme",
    tags=["secondme"],
    default_response_class=JSONOut,
    dependencies=[USER_TOKEN],
)


@router.post(
    "/invoke",
    response_model=InvokeOut,
    responses=error_responses(400, 401, 403, 422, 429, 502, 503, 504),
)
async def invoke(body: InvokeBody, user: CurrentUser, rt: RuntimeDep) -> JSONResponse:
    """Ask Second Me; `history` is your latest messages after this exchange, oldest first."""
    exchange = await rt.secondme.invoke_second_me(user.require_user(), body.prompt)
    return JSONResponse(
        {"reply": exchange.reply, "history": [m.as_json() for m in exchange.history]}
    )


@router.get(
    "/history", response_model=list[HistoryItemOut], responses=error_responses(401, 403, 422, 503)
)
async def history(
    user: CurrentUser,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
) -> JSONResponse:
    """Your latest `limit` messages with Second Me, oldest first."""
    messages = await rt.secondme.get_last_messages(user.require_user(), limit)
    return JSONResponse([m.as_json() for m in messages])
