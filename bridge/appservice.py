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
from fastapi import APIRouter, Request
from starlette.responses import Response

from bridge.matrix import MatrixError, MatrixUnavailable
from bridge.service import EXTENSION, Bridge
from gateway.infra.jsonio import JSONResponse

log = logging.getLogger(__name__)

router = APIRouter(tags=["matrix appservice"])
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
    bridge: Bridge | None = request.app.state.runtime.extensions.get(EXTENSION)
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
    # Ephemeral events (presence, typing, receipts) are not bridged to the city.
    # receive() commits every event before returning: only then is the 200 safe.
    stored = await bridge.inbox.receive(events)
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


for _prefix, _in_schema in ((PREFIX, True), ("", False)):
    router.add_api_route(
        f"{_prefix}/transactions/{{txn_id}}",
        transaction,
        methods=["PUT"],
        include_in_schema=_in_schema,
        summary="Synapse pushes a transaction of events",
    )
    router.add_api_route(
        f"{_prefix}/users/{{user_id}}",
        query_user,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks whether a user in our namespace exists",
    )
    router.add_api_route(
        f"{_prefix}/rooms/{{alias}}",
        query_alias,
        methods=["GET"],
        include_in_schema=_in_schema,
        summary="Synapse asks for a room alias in our namespace",
    )
router.add_api_route(f"{PREFIX}/ping", ping, methods=["POST"], summary="Synapse's ping")
