"""Presence over HTTP: the heartbeat endpoint (the hottest path) and status reads.

`POST /internal/matrix/presence/online` is called by every open tab every ~20 s,
and by `navigator.sendBeacon` on page close, so it is written for speed: the body
is parsed with orjson and checked by hand (no pydantic model), the internal token
is a constant-time compare (no JWT decode), a user JWT is verified once and then
remembered until it expires (gateway.core.auth), and the work is one EVALSHA (plus, only on a
transition, one PUBLISH from the announcer, off the request path). No database.

sendBeacon sends `text/plain` and cannot set headers, so the token may come as
`access_token` in the body; a header, when present, wins.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request

from gateway.core.auth import USER_ID_RE, bearer_from_header, decode_user_token, is_internal_token
from gateway.core.errors import AppError, forbidden, unauthorized
from gateway.core.presence.metrics import PRESENCE_HEARTBEATS
from gateway.http.deps import RuntimeDep, Services
from gateway.http.fastpath import FastRoute
from gateway.http.responses import JSONResponse
from gateway.http.schemas import (
    MAX_DEVICE_ID_CHARS,
    USER_OR_SERVICE_TOKEN,
    HeartbeatBody,
    HeartbeatOut,
    JSONOut,
    PresenceListOut,
    error_responses,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["presence"], default_response_class=JSONOut)

MAX_USERS_PER_QUERY = 200
# Larger values mean "idle for ages"; clamped so the Lua arithmetic stays exact.
_MAX_LAST_ACTIVE_AGO = 10**12
_HEARTBEAT_STATUSES = {"online": "online", "away": "away", "unavailable": "away"}
_HEARTBEATS = PRESENCE_HEARTBEATS.labels("http")
_JSON_TYPES = frozenset({b"application/json", b"text/plain", b""})
# The endpoint parses the body by hand; the model only documents it.
_BODY_SCHEMA = HeartbeatBody.model_json_schema()


# --- the heartbeat --------------------------------------------------------------------


def _invalid(code: str, message: str) -> AppError:
    return AppError(422, code, message)


async def heartbeat(
    rt: Services, content_type: str | None, authorization: str | None, raw: bytes
) -> dict[str, Any]:
    """The whole heartbeat: parse, authenticate, validate, one EVALSHA; the answer."""
    _HEARTBEATS.inc()
    service = rt.presence
    body = _parse_body(content_type, raw)

    # Who is calling: the header, else the body's access_token (sendBeacon).
    # A body token of the wrong type is refused even when the header wins: the
    # documented body says `access_token` is a string.
    body_token = body.get("access_token")
    if body_token is not None and not isinstance(body_token, str):
        raise _invalid("invalid_access_token", "access_token must be a string")
    token = bearer_from_header(authorization)
    if token is None:
        token = body_token or None
    if token is None:
        raise unauthorized("missing bearer token (header or access_token)")
    settings = rt.settings
    internal = settings.city_internal_token
    caller = None  # the internal service token may name any user
    if internal is None or not is_internal_token(internal.get_secret_value(), token):
        # 401 when invalid; verified tokens are remembered until they expire.
        caller = decode_user_token(settings.jwt_secret, token).require_user()

    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not USER_ID_RE.match(user_id):
        raise _invalid("invalid_user_id", "user_id must be a city user id like u_123")
    if caller is not None and caller != user_id:
        raise forbidden("a user can only send their own presence")

    status = body.get("status")
    device_id = body.get("device_id")
    if device_id is not None and (
        not isinstance(device_id, str) or not 0 < len(device_id) <= MAX_DEVICE_ID_CHARS
    ):
        raise _invalid(
            "invalid_device_id", f"device_id must be a string of 1-{MAX_DEVICE_ID_CHARS} chars"
        )
    ago = body.get("last_active_ago")
    if ago is not None:
        if type(ago) is float and ago.is_integer():
            ago = int(ago)  # 208.0 is an integer in JSON (and in the documented schema)
        if type(ago) is not int or ago < 0:  # bool is an int subclass: rejected here
            raise _invalid(
                "invalid_last_active_ago", "last_active_ago must be an integer >= 0 (ms)"
            )
        ago = min(ago, _MAX_LAST_ACTIVE_AGO)

    if status == "offline":
        state = await service.device_offline(user_id, device_id)
    elif status is None or (isinstance(status, str) and status in _HEARTBEAT_STATUSES):
        state = await service.heartbeat(user_id, device_id, status, ago)
    else:
        raise _invalid("invalid_status", "status must be online, away, unavailable or offline")
    return {
        "user_id": user_id,
        "status": state.status,
        "matrix_user_id": service.matrix_user_id(user_id),
        # How often the client should send the next one (SPEC: "clients are told").
        "heartbeat_seconds": settings.presence_heartbeat_seconds,
    }


HEARTBEAT_PATH = "/internal/matrix/presence/online"


async def _fast_heartbeat(
    rt: Services,
    params: tuple[str, ...],
    content_type: str | None,
    authorization: str | None,
    raw: bytes,
) -> tuple[int, dict[str, Any]]:
    return 200, await heartbeat(rt, content_type, authorization, raw)


# Answered by gateway.http.fastpath.FastPaths ahead of the framework's stack.
HEARTBEAT_ROUTE = FastRoute(HEARTBEAT_PATH, re.compile(re.escape(HEARTBEAT_PATH)), _fast_heartbeat)


@router.post(
    HEARTBEAT_PATH,
    response_model=HeartbeatOut,
    responses=error_responses(401, 403, 415, 422, 429, 503),
    dependencies=[USER_OR_SERVICE_TOKEN],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _BODY_SCHEMA},
                "text/plain": {"schema": _BODY_SCHEMA},
            },
        }
    },
    summary="Presence heartbeat (also sendBeacon's text/plain)",
)
async def presence_online(request: Request) -> JSONResponse:
    """Online/away heartbeat, or `status: offline` for one device (the tab closing).

    Body `{user_id, status?, device_id?, last_active_ago?, access_token?}` as
    application/json or text/plain; the answer is the user's resulting state. Auth:
    the internal service token (any user) or the user's own JWT, in the
    Authorization header or as `access_token` in the body.
    """
    # Normally FastPaths (HEARTBEAT_ROUTE) answers first; this gives the same answers.
    answer = await heartbeat(
        request.app.state.runtime,
        request.headers.get("content-type"),
        request.headers.get("authorization"),
        await request.body(),
    )
    return JSONResponse(answer)


def _parse_body(content_type: str | None, raw: bytes) -> dict[str, Any]:
    media = (content_type or "").split(";", 1)[0].strip().lower().encode()
    if media not in _JSON_TYPES:
        raise AppError(
            415, "unsupported_media_type", "send the body as application/json or text/plain"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _invalid("invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _invalid("invalid_json", "the body must be a JSON object")
    return body


# --- reads ------------------------------------------------------------------------------


@router.get("/city/presence", response_model=PresenceListOut, responses=error_responses(422, 503))
async def presence_list(
    rt: RuntimeDep,
    user_id: Annotated[
        list[str] | None,
        # Documented here, checked below (with this endpoint's own error codes).
        Query(
            description=f"repeat for several users (at most {MAX_USERS_PER_QUERY})",
            json_schema_extra={
                "items": {"type": "string", "pattern": USER_ID_RE.pattern},
                "maxItems": MAX_USERS_PER_QUERY,
            },
        ),
    ] = None,
) -> JSONResponse:
    """Each user's state, in the order asked; users never seen are `offline`."""
    user_ids = user_id or []
    if len(user_ids) > MAX_USERS_PER_QUERY:
        raise _invalid("too_many_users", f"ask for at most {MAX_USERS_PER_QUERY} users at once")
    for uid in user_ids:
        if not USER_ID_RE.match(uid):
            raise _invalid("invalid_user_id", f"not a city user id: {uid[:64]!r}")
    states = await rt.presence.statuses(user_ids)
    return JSONResponse(
        {
            "users": [
                {"user_id": s.user_id, "status": s.status, "last_active_ago": s.last_active_ago}
                for s in states
            ]
        }
    )
