"""create_app(settings): the ASGI application and the lifespan that opens pools.

`worker_app()` is the factory each process of `city-gateway serve --workers N` calls.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bridge import appservice
from gateway.app.runtime import open_runtime
from gateway.http import (
    feed,
    health,
    media,
    members,
    message_changes,
    presence,
    rooms,
    search,
    secondme,
    stats,
)
from gateway.http.errors import install_error_handlers
from gateway.http.fastpath import FastPaths
from gateway.http.limits import BodySizeLimit
from gateway.http.middleware import MetricsMiddleware
from gateway.http.presence import HEARTBEAT_ROUTE
from gateway.http.responses import JSONResponse
from gateway.http.rooms import POST_MESSAGE_ROUTE
from gateway.http.webapp import mount_webapp
from gateway.infra.logs import install_log_hygiene
from gateway.infra.settings import Settings, load_settings
from gateway.realtime import ws_presence, ws_rooms

ROUTERS = [
    health.router,
    # Early: routes are matched in order, and the heartbeat is the hottest endpoint.
    presence.router,
    rooms.router,
    message_changes.router,
    members.router,
    feed.router,
    search.router,
    media.router,
    secondme.router,
    appservice.router,
    ws_rooms.router,
    stats.router,
    ws_presence.router,
]


APPSERVICE_MAX_REQUEST_BYTES = 32 * 1024 * 1024


def create_app(settings: Settings) -> FastAPI:
    # No token or control character from a request reaches a log line, whoever set
    # up logging (`city-gateway serve`, tests, an embedding server).
    install_log_hygiene()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            # Everything built at start-up lives as long as the process: move it out
            # of the collector's reach, so full collections stay short (a ~100 ms pause
            # over start-up objects showed up in the heartbeat's p99).
            gc.collect()
            gc.freeze()
            yield

    app = FastAPI(
        title="DAARION City gateway",
        version="0.1.0",
        description="Public rooms, presence, city feed, Second Me, and the Matrix bridge.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    mount_webapp(app)  # the City web app at /app/, when web/app/dist is built
    # Our own limiter rather than FastAPI's max_body_size: Starlette answers a
    # declared oversized body with a plain-text 413, and every error here is JSON.
    hs_token = settings.matrix_hs_token if settings.matrix_enabled else None
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.city_max_request_bytes,
        # A Synapse transaction holds up to 100 events of up to 64 KiB; refusing one
        # would make Synapse retry it forever and stall Matrix → city traffic. Only
        # Synapse gets that much: the hs_token is checked before the body is read.
        path_limits={
            "/_matrix/app/": APPSERVICE_MAX_REQUEST_BYTES,
            "/transactions/": APPSERVICE_MAX_REQUEST_BYTES,
        },
        path_token=hs_token.get_secret_value() if hs_token is not None else None,
    )
    # The two busiest POSTs (the presence heartbeat and posting a message) skip the
    # rest of the stack (gateway/http/fastpath.py says why); they enforce the body
    # limit themselves and fall through to their documented routes otherwise.
    app.add_middleware(
        FastPaths,
        routes=[HEARTBEAT_ROUTE, POST_MESSAGE_ROUTE],
        max_bytes=settings.city_max_request_bytes,
    )
    # Outermost: request id, metrics and access log also cover 413s and errors.
    app.add_middleware(MetricsMiddleware)
    return app


def worker_app() -> FastAPI:
    """The app of one worker of `city-gateway serve --workers N` (uvicorn `factory=True`).

    Workers are spawned, not forked: each reads the settings from the environment the
    parent checked, sets up its own logging, and builds its own Runtime on start-up.
    """
    from gateway.infra.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
