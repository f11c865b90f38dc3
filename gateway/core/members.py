"""A room's members: city users connected now and the Matrix room's real users (SPEC §13).

`GET /city/rooms/{room_id}/members`. City users are the room's realtime membership
across processes (the set `members_online` counts), named as their tokens named
them, with their city presence (`online` / `away`; a connected user the presence
service does not know is `online` — they are connected right now). Matrix users come
from the bridge (gateway.core.ports.MatrixMembers): joined real users, with their
Matrix presence in Matrix's names (`online` / `unavailable` / `offline`).

Each half degrades on its own: without Redis the city half is this process's
sockets, without the bridge (or with Synapse away) the Matrix half is what the
bridge last knew, or nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import not_found
from gateway.core.ports import ConnectedUsers, MatrixMembers, PresenceStatuses
from gateway.core.storage import Executor
from gateway.core.storage import rooms as room_sql

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str | None  # a city user, or
    matrix_user_id: str | None  # a Matrix user
    display_name: str | None
    status: str

    def as_json(self) -> dict[str, Any]:
        who = (
            {"user_id": self.user_id}
            if self.user_id is not None
            else {"matrix_user_id": self.matrix_user_id}
        )
        return {**who, "display_name": self.display_name, "status": self.status}


class RoomMembersService:
    def __init__(
        self,
        db: Executor,
        connected: ConnectedUsers,
        presence: PresenceStatuses,
        matrix: MatrixMembers,
    ) -> None:
        self._db = db
        self._connected = connected
        self._presence = presence
        self._matrix = matrix

    async def members(self, room_id: str) -> list[Member]:
        if await room_sql.get_room(self._db, room_id) is None:
            raise not_found("room_not_found", f"room {room_id!r} does not exist")
        return [*await self._city(room_id), *await self._matrix_side(room_id)]

    async def _city(self, room_id: str) -> list[Member]:
        users = await self._connected.users_in(room_id)
        if not users:
            return []
        names = await self._connected.display_names(users)
        statuses: dict[str, str] = {}
        try:
            statuses = {s.user_id: s.status for s in await self._presence.statuses(users)}
        except Exception as exc:
            log.warning("members of %s without presence: %s", room_id, exc)
        return [
            Member(u, None, names.get(u), "away" if statuses.get(u) == "away" else "online")
            for u in users
        ]

    async def _matrix_side(self, room_id: str) -> list[Member]:
        try:
            found = await self._matrix.members(room_id)
        except Exception as exc:
            log.warning("Matrix members of %s not available: %s", room_id, exc)
            return []
        return [Member(None, m.matrix_user_id, m.display_name, m.status) for m in found]
