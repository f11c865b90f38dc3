"""City room ⇄ Matrix room: the bot creates `#city_{slug}:S` and the mapping is stored.

Several processes may try at once (start-up sweeps, `POST /city/rooms`, Synapse's
alias query): the alias is the arbiter. Whoever loses createRoom with M_ROOM_IN_USE
resolves the alias instead, so every process stores the same room id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from bridge.matrix import MatrixClient, MatrixError
from bridge.naming import Names
from gateway.models import Room
from gateway.storage import Executor
from gateway.storage import rooms as room_sql

log = logging.getLogger(__name__)


class RoomMapper:
    def __init__(self, db: Executor, matrix: MatrixClient, names: Names) -> None:
        self._db = db
        self._matrix = matrix
        self._names = names
        self._known: dict[str, str] = {}  # city room id -> Matrix room id
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def cached(self, city_room_id: str) -> str | None:
        return self._known.get(city_room_id)

    async def matrix_room_for(self, city_room_id: str) -> str | None:
        """The Matrix room of a city room, creating it if needed; None if no such room."""
        known = self._known.get(city_room_id)
        if known is not None:
            return known
        room = await room_sql.get_room(self._db, city_room_id)
        if room is None:
            return None
        return await self.ensure(room)

    async def ensure(self, room: Room) -> str:
        if room.matrix_room_id is not None:
            self._known[room.id] = room.matrix_room_id
            return room.matrix_room_id
        async with self._locks[room.id]:
            known = self._known.get(room.id)
            if known is not None:
                return known
            fresh = await room_sql.get_room(self._db, room.id)
            if fresh is not None and fresh.matrix_room_id is not None:
                self._known[room.id] = fresh.matrix_room_id
                return fresh.matrix_room_id
            alias = self._names.alias_for(room.id)
            try:
                matrix_room_id = await self._matrix.create_room(
                    alias_localpart=self._names.alias_localpart(room.id),
                    name=room.name,
                    topic=room.description,
                )
                log.info("created Matrix room %s %s for %s", matrix_room_id, alias, room.id)
            except MatrixError as exc:
                if exc.errcode != "M_ROOM_IN_USE":
                    raise
                resolved = await self._matrix.resolve_alias(alias)
                if resolved is None:
                    raise
                matrix_room_id = resolved
                # Created by another process (same bot) or left over from an earlier
                # database: make sure the bot is in it.
                await self._matrix.join(matrix_room_id, self._names.bot)
            await room_sql.set_matrix_mapping(self._db, room.id, matrix_room_id, alias)
            self._known[room.id] = matrix_room_id
            return matrix_room_id
