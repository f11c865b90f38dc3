"""After-commit notifications between parts of the service.

The rules (rooms, messages, presence) announce what happened here; fanout, the
Matrix bridge and the NATS publisher subscribe. A failing listener is logged and
never undoes or blocks the write that already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.core.models import Message, ReactionChange, Room
from gateway.infra.tasks import call_safely

log = logging.getLogger(__name__)

MessageListener = Callable[[Message], Awaitable[None]]
RoomListener = Callable[[Room], Awaitable[None]]
ReactionListener = Callable[[ReactionChange], Awaitable[None]]
# (user_id, previous status, new status, last_active_ago ms)
PresenceListener = Callable[[str, str, str, int], Awaitable[None]]
# (room_id, user_id, typing): a city user's typing as the room's sockets heard it
TypingListener = Callable[[str, str, bool], Awaitable[None]]


@dataclass
class CityHooks:
    message_posted: list[MessageListener] = field(default_factory=list)
    # The message as stored after the edit / as it was before the delete.
    message_edited: list[MessageListener] = field(default_factory=list)
    message_deleted: list[MessageListener] = field(default_factory=list)
    room_created: list[RoomListener] = field(default_factory=list)
    reaction_changed: list[ReactionListener] = field(default_factory=list)
    presence_changed: list[PresenceListener] = field(default_factory=list)
    # Emitted by the process holding the typing socket (not once cluster-wide).
    typing_changed: list[TypingListener] = field(default_factory=list)

    async def emit_message(self, message: Message) -> None:
        for listener in self.message_posted:
            await call_safely(listener, message, logger=log)

    async def emit_message_edited(self, message: Message) -> None:
        for listener in self.message_edited:
            await call_safely(listener, message, logger=log)

    async def emit_message_deleted(self, message: Message) -> None:
        for listener in self.message_deleted:
            await call_safely(listener, message, logger=log)

    async def emit_reaction(self, change: ReactionChange) -> None:
        for listener in self.reaction_changed:
            await call_safely(listener, change, logger=log)

    async def emit_room(self, room: Room) -> None:
        for listener in self.room_created:
            await call_safely(listener, room, logger=log)

    async def emit_presence(self, user_id: str, previous: str, status: str, ago: int) -> None:
        for listener in self.presence_changed:
            await call_safely(listener, user_id, previous, status, ago, logger=log)

    async def emit_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        for listener in self.typing_changed:
            await call_safely(listener, room_id, user_id, typing, logger=log)
