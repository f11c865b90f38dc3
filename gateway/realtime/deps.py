"""What the socket routes need from the running process, read from app state.

A Protocol, not the app's Runtime: realtime never imports the composition root (nor
gateway.http, its sibling); the app's Runtime satisfies it.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.core.presence.service import PresenceService
from gateway.infra.settings import Settings
from gateway.realtime.hub import Realtime


class RealtimeServices(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def realtime(self) -> Realtime: ...

    @property
    def presence(self) -> PresenceService: ...


async def get_services(conn: HTTPConnection) -> RealtimeServices:
    services: RealtimeServices = conn.app.state.runtime
    return services


ServicesDep = Annotated[RealtimeServices, Depends(get_services)]
