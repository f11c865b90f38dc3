"""GET /city/search: full-text search over room messages (SPEC §13, gateway.core.search)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from gateway.core.search import MAX_LIMIT, QUERY_MAX_CHARS
from gateway.http.deps import RuntimeDep
from gateway.http.message_changes import optional_viewer
from gateway.http.responses import JSONResponse
from gateway.http.schemas import (
    ID_MAX_CHARS,
    NO_NUL,
    TEXT_PATTERN,
    JSONOut,
    MessageOut,
    error_responses,
)

router = APIRouter(prefix="/city", tags=["search"], default_response_class=JSONOut)

CURSOR_MAX_CHARS = 128


class SearchResultOut(BaseModel):
    message: MessageOut
    highlight: str = Field(
        description="the body (or its best fragment, if long) as HTML-escaped text with "
        "matches wrapped in `<mark>…</mark>` — the only markup it contains",
        examples=["нова <mark>кімната</mark> &lt;b&gt;"],
    )


class SearchPageOut(BaseModel):
    results: list[SearchResultOut] = Field(
        description="exact matches (every word in the form typed) first, then other "
        "inflections of Ukrainian words; newest first within each"
    )
    next: str | None = Field(
        description="opaque cursor: pass it as `before` for the next page; null at the end"
    )


@router.get(
    "/search",
    response_model=SearchPageOut,
    responses=error_responses(401, 404, 422, 503),
)
async def search(
    request: Request,
    rt: RuntimeDep,
    q: Annotated[
        str,
        Query(
            description='words (Ukrainian or English); websearch syntax: "a phrase", '
            "-excluded, or. Blank: 422 `empty_query`; longer than "
            f"{QUERY_MAX_CHARS} characters (trimmed): 422 `query_too_long`",
            # Documented, checked by the core (its own error codes).
            json_schema_extra={
                "minLength": 1,
                "maxLength": QUERY_MAX_CHARS,
                "pattern": TEXT_PATTERN,
            },
        ),
    ],
    room_id: Annotated[
        str | None,
        Query(
            max_length=ID_MAX_CHARS,
            description="only this room (404 `room_not_found` if unknown)",
            json_schema_extra=NO_NUL,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    before: Annotated[
        str | None,
        Query(
            max_length=CURSOR_MAX_CHARS,
            description="the `next` of the previous page (422 `invalid_cursor` otherwise)",
            json_schema_extra=NO_NUL,
        ),
    ] = None,
) -> JSONResponse:
    """A bearer token is optional, as for room history; with one (it must be valid:
    else 401), reactions' `me` is relative to its user."""
    viewer = optional_viewer(request, rt)
    # An empty `before` is no cursor (a client that sends `before=` for page one).
    page = await rt.search.search(q, room_id=room_id, limit=limit, before=before or None)
    messages = await rt.reactions.attach([hit.message for hit in page.results], viewer)
    return JSONResponse(
        {
            "results": [
                {"message": message.as_json(), "highlight": hit.highlight}
                for message, hit in zip(messages, page.results, strict=True)
            ],
            "next": page.next,
        }
    )
