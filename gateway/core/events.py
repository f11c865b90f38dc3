"""After-commit notifications between parts of the service.

The rules (rooms, messages, presence) announce what happened here; fanout, the
Matrix bridge and the NATS publisher subscribe. A failing listener is logged and
never undoes or blocks the write that already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.core.models import Message, Room

log = logging.getLogger(__name__)

MessageListener = Callable[[Message], Awaitable[None]]
RoomListener = Callable[[Room], Awaitable[None]]
# (user_id, previous status, new status, last_active_ago ms)
PresenceListener = Callable[[str, str, str, int], Awaitable[None]]


@dataclass
class CityHooks:
    message_posted: list[MessageListener] = field(default_factory=list)
    room_created: list[RoomListener] = field(default_factory=list)
    presence_changed: list[PresenceListener] = field(default_factory=list)

    async def emit_message(self, message: Message) -> None:
        for listener in self.message_posted:
            await _safely(listener, message)

    async def emit_room(self, room: Room) -> None:
        for listener in self.room_created:
            await _safely(listener, room)

    async def emit_presence(self, user_id: str, previous: str, status: str, ago: int) -> None:
        for listener in self.presence_changed:
            await _safely(listener, user_id, previous, status, ago)


async def _safely(listener: Callable[..., Awaitable[None]], *args: Any) -> None:
    try:
        await listener(*args)
    except Exception:
        log.exception("listener %r failed", listener)
