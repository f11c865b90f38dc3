"""/secondme: talk to your Second Me and read your conversation with it.

The user is always the token's subject; there is no way to name another user, so
one user's history is never visible to another.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from gateway.core.secondme.service import secondme_service
from gateway.http.deps import CurrentUser, RuntimeDep
from gateway.http.schemas import ERRORS, ErrorOut
from gateway.infra.jsonio import JSONResponse

_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **{status: {"model": ErrorOut} for status in (429, 502, 503, 504)},
}

router = APIRouter(prefix="/secondme", tags=["secondme"], responses=_ERRORS)


class InvokeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str


class HistoryItemOut(BaseModel):
    role: str
    content: str
    created_at: datetime


class InvokeOut(BaseModel):
    reply: str
    history: list[HistoryItemOut]


@router.post("/invoke", response_model=InvokeOut)
async def invoke(body: InvokeBody, user: CurrentUser, rt: RuntimeDep) -> JSONResponse:
    """Ask Second Me; `history` is your latest messages after this exchange, oldest first."""
    exchange = await secondme_service(rt).invoke_second_me(user.require_user(), body.prompt)
    return JSONResponse(
        {"reply": exchange.reply, "history": [m.as_json() for m in exchange.history]}
    )


@router.get("/history", response_model=list[HistoryItemOut])
async def history(
    user: CurrentUser,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
) -> JSONResponse:
    """Your latest `limit` messages with Second Me, oldest first."""
    messages = await secondme_service(rt).get_last_messages(user.require_user(), limit)
    return JSONResponse([m.as_json() for m in messages])
