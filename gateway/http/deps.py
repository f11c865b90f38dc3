"""Annotated dependencies read from app state; they work for REST and WebSockets.

The routes see the running process through `Services`, a Protocol of what they use,
not through the app's Runtime: http never imports the composition root, whose
Runtime satisfies this Protocol (it is stored as `app.state.runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Protocol

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.core.auth import Principal, authenticate, bearer_from_header
from gateway.core.feed import FeedService
from gateway.core.media import MediaService
from gateway.core.members import RoomMembersService
from gateway.core.message_changes import CityMessageChanges
from gateway.core.messages import MessageService
from gateway.core.ports import ReadyCheck
from gateway.core.presence.service import PresenceService
from gateway.core.reactions import ReactionService
from gateway.core.rooms import RoomService
from gateway.core.search import SearchService
from gateway.core.secondme.service import SecondMeService
from gateway.infra.settings import Settings


class ScrapeRefresh(Protocol):
    """Gauges read from PostgreSQL when `/metrics` is scraped (cached)."""

    async def refresh(self) -> None: ...


class Services(Protocol):
    """What the HTTP routes use of the running process (read-only)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> asyncpg.Pool: ...

    @property
    def rooms(self) -> RoomService: ...

    @property
    def messages(self) -> MessageService: ...

    @property
    def feed(self) -> FeedService: ...

    @property
    def members(self) -> RoomMembersService: ...

    @property
    def search(self) -> SearchService: ...

    @property
    def reactions(self) -> ReactionService: ...

    @property
    def message_changes(self) -> CityMessageChanges: ...

    @property
    def media(self) -> MediaService: ...

    @property
    def presence(self) -> PresenceService: ...

    @property
    def secondme(self) -> SecondMeService: ...

    @property
    def ready_checks(self) -> Mapping[str, ReadyCheck]:
        """name -> check that raises when that dependency is not usable (`/readyz`)."""
        ...

    @property
    def metrics(self) -> ScrapeRefresh: ...


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in
# a thread pool, which costs more than the work they do.
async def get_runtime(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.runtime
    return services


RuntimeDep = Annotated[Services, Depends(get_runtime)]


async def current_user(conn: HTTPConnection, rt: RuntimeDep) -> Principal:
    """The caller's user JWT from `Authorization: Bearer` (401 otherwise)."""
    token = bearer_from_header(conn.headers.get("authorization"))
    return authenticate(
        token, jwt_secret=rt.settings.jwt_secret, internal_token=None, allow_service=False
    )


CurrentUser = Annotated[Principal, Depends(current_user)]
