"""The appservice API Synapse calls (Matrix spec, "Application Service API").

Only Synapse's `hs_token` is accepted — as `Authorization: Bearer` (Matrix 1.4+) or
the legacy `access_token` query parameter — compared in constant time: none is 401
M_UNAUTHORIZED, a wrong one 403 M_FORBIDDEN. Errors use Matrix's
`{"errcode", "error"}` shape, since Synapse is the client here. The routes are also
served without the `/_matrix/app/v1` prefix (the legacy paths of older homeservers).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from fastapi import APIRouter, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyQuery, HTTPBearer
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from bridge.ephemeral import STABLE as EPHEMERAL_STABLE
from bridge.ephemeral import UNSTABLE as EPHEMERAL_UNSTABLE
from bridge.ephemeral import ephemeral_events
from bridge.matrix import MatrixError, MatrixUnavailable
from bridge.service import Bridge

log = logging.getLogger(__name__)

# The handlers return their own responses; this class only lets FastAPI document the
# `responses=` models below (it writes `string` for a non-JSONResponse class).
router = APIRouter(tags=["matrix appservice"], default_response_class=JSONResponse)
PREFIX = "/_matrix/app/v1"


def _error(status: int, errcode: str, message: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "error": message}, status_code=status)


# Seconds Synapse is asked to wait before asking again when we cannot reach it.
_RETRY_AFTER_SECONDS = 5

Handler = Callable[..., Awaitable[Response]]


def _homeserver_errors(handler: Handler) -> Handler:
    """Answer Synapse in its own error shape when answering needs Synapse and it fails.

    Some answers (a ghost, a room for an alias, the power levels behind a redaction)
    require calling the homeserver back; when that call fails, Synapse gets a 503/502
    it will retry — never a 500 in the city's shape, which it cannot read.
    """

    @wraps(handler)
    async def guarded(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except MatrixUnavailable as exc:
            log.warning("appservice call needed the homeserver, which did not answer: %s", exc)
            response = _error(503, "M_UNKNOWN", "the homeserver could not be reached")
            response.headers["Retry-After"] = str(_RETRY_AFTER_SECONDS)
            return response
        except MatrixError as exc:
            log.warning("appservice call needed the homeserver, which refused: %s", exc)
            return _error(502, "M_UNKNOWN", "the homeserver refused a call this needs")

    return guarded


def _authorise(request: Request) -> Bridge | Response:
    """The bridge if the caller is Synapse; else the error response to send."""
    # The app's Runtime holds the bridge as `bridge` (None when it is not configured).
    bridge: Bridge | None = request.app.state.runtime.bridge
    if bridge is None:
        return _error(404, "M_UNRECOGNIZED", "the Matrix bridge is not enabled")
    token: str | None = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if token is None:
        token = request.query_params.get("access_token") or None
    if token is None:
        return _error(401, "M_UNAUTHORIZED", "missing hs_token")
    expected = bridge.settings.matrix_hs_token
    assert expected is not None
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return _error(403, "M_FORBIDDEN", "invalid hs_token")
    return bridge


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return _error(400, "M_NOT_JSON", "body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "M_BAD_JSON", "body must be a JSON object")
    return body


@_homeserver_errors
async def transaction(txn_id: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    events = body.get("events", [])
    if not isinstance(events, list):
        return _error(400, "M_BAD_JSON", "events must be a list")
    for name in (EPHEMERAL_STABLE, EPHEMERAL_UNSTABLE):
        if name in body and not isinstance(body[name], list):
            return _error(400, "M_BAD_JSON", f"{name} must be a list")
    # receive() commits every event before returning: only then is the 200 safe.
    stored = await bridge.inbox.receive(events)
    # Typing and presence (bridge/ephemeral.py): after the timeline, so a join in this
    # transaction is known to the presence it carries; never retried, never fails.
    ephemeral = ephemeral_events(body)
    if ephemeral:
        await bridge.ephemeral.handle(ephemeral)
    log.debug("appservice transaction %s: %d event(s)", txn_id, stored)
    return JSONResponse({})


@_homeserver_errors
async def query_user(user_id: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    # Only users the city has seen (SPEC §12): Synapse asks about any id in our
    # namespace that someone invites or looks up, and registering on its say-so would
    # let anyone mint accounts. Ghosts are registered when their city user acts.
    if await bridge.ghosts.known(user_id):
        await bridge.ghosts.ensure(user_id)
        return JSONResponse({})
    return _error(404, "M_NOT_FOUND", "no such user in the city")


@_homeserver_errors
async def query_alias(alias: str, request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    city_room_id = bridge.names.city_room_of_alias(alias)
    if city_room_id is None:
        return _error(404, "M_NOT_FOUND", "not a city room alias")
    # Creates the Matrix room (with this alias) if the city room exists: Synapse then
    # resolves the alias and the joining Element user just gets in. A room being
    # created right now is 404 (bridge/rooms.py explains why it must not wait).
    if await bridge.rooms.for_alias_query(city_room_id) is None:
        return _error(404, "M_NOT_FOUND", "no such city room")
    return JSONResponse({})


async def ping(request: Request) -> Response:
    bridge = _authorise(request)
    if isinstance(bridge, Response):
        return bridge
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    return JSONResponse({})


# --- the document (/openapi.json): what each route answers --------------------------


class EmptyOut(BaseModel):
    """`{}`: success, as the appservice API answers it."""

    model_config = ConfigDict(extra="forbid")


class MatrixErrorOut(BaseModel):
    """Matrix's error shape (Synapse is the client of these routes)."""

    errcode: str
    error: str


class BodyTooLargeOut(BaseModel):
    """413 from the gateway's body limit, in the city's error shape."""

    code: str
    message: str


_MATRIX_ERRORS = {
    400: "M_NOT_JSON / M_BAD_JSON: the body is not a JSON object (with an `events` list)",
    401: "M_UNAUTHORIZED: no hs_token",
    403: "M_FORBIDDEN: not Synapse's hs_token",
    404: "M_UNRECOGNIZED: the bridge is off; M_NOT_FOUND: no such user or room",
    502: "M_UNKNOWN: the homeserver refused a call this answer needs",
    503: "M_UNKNOWN: the homeserver could not be reached (Retry-After)",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: {"model": EmptyOut, "description": "`{}`"}}
    for status in statuses:
        out[status] = {"model": MatrixErrorOut, "description": _MATRIX_ERRORS[status]}
    if 503 in out:
        out[503]["headers"] = {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}}
    out[413] = {"model": BodyTooLargeOut, "description": "over the body limit"}
    return out


def _json_body(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


# Only what is checked is typed: events that are not Matrix events are skipped (and
# counted), and the ping's `transaction_id` is not read.
_TRANSACTION_BODY = _json_body(
    {
        "events": {"type": "array", "description": "Matrix events; malformed ones are ignored"},
        "ephemeral": {"type": "array", "description": "EDUs: m.typing, m.presence (MSC2409)"},
        "de.sorunome.msc2409.ephemeral": {
            "type": "array",
            "description": "the same, under MSC2409's unstable name",
        },
    }
)
_PING_BODY = _json_body({"transaction_id": {"description": "not read"}})


# Document who may call (`auto_error=False`: they refuse nothing; `_authorise` checks).
_SYNAPSE = [
    Security(HTTPBearer(auto_error=False, scheme_name="hsToken", description="Synapse's hs_token")),
    Security(
        APIKeyQuery(
            name="access_token",
            auto_error=False,
            scheme_name="hsTokenQuery",
            description="hs_token, the legacy way (homeservers before Matrix 1.4)",
        )
    ),
]


for _prefix, _in_schema in ((PREFIX, True), ("", False)):
    router.add_api_route(
        f"{_prefix}/transactions/{{txn_id}}",
        transaction,
        methods=["PUT"],
        include_in_schema=_in_schema,
        summary="Synapse pushes a transaction of events",
        responses=_responses(400, 401, 403, 404, 502, 503),
        dependencies=_SYNAPSE,
        openapi_extra=_TRANSACTION_BODY,
    )
    router.add_api_route(
        f"{_prefix}/users/{{user_id}}",
        query_user,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks whether a user in our namespace exists",
        responses=_responses(401, 403, 404, 502, 503),
        dependencies=_SYNAPSE,
    )
    router.add_api_route(
        f"{_prefix}/rooms/{{alias}}",
        query_alias,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks for a room alias in our namespace",
        responses=_responses(401, 403, 404, 502, 503),
        dependencies=_SYNAPSE,
    )
router.add_api_route(
    f"{PREFIX}/ping",
    ping,
    methods=["POST"],
    summary="Synapse's ping",
    responses=_responses(400, 401, 403, 404),
    dependencies=_SYNAPSE,
    openapi_extra=_PING_BODY,
)
