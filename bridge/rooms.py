"""City room ⇄ Matrix room: the bot creates `#city_{slug}:S` and the mapping is stored.

No window where the alias exists but the room refuses joins (SPEC §12): Synapse's
createRoom binds `room_alias_name` *before* it sends the room's join rules, so a join
through the alias during those milliseconds got 403. The bot therefore creates the
room without an alias and binds the alias only once createRoom has returned (the
room is complete then), then sets the canonical alias and publishes the room.

Several processes may try at once (start-up sweeps, `POST /city/rooms`, Synapse's
alias query): a per-room PostgreSQL advisory lock, held while the room is created,
makes one of them create it; the others then find the mapping. An alias that already
exists (a Synapse kept while the city database was reset) is adopted.

Resolving the alias first makes Synapse ask *us* about it (`GET /rooms/{alias}` on
the appservice API), possibly on another process: that query never waits for a room
being created — it answers 404 at once — or the two would wait for each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import asyncpg

from bridge.matrix import MatrixClient, MatrixError
from bridge.naming import Names
from gateway.core.models import Room
from gateway.core.rooms import RoomService
from gateway.core.storage import rooms as room_sql

log = logging.getLogger(__name__)

_CREATE_LOCK = "city_room_matrix:"


class RoomMapper:
    def __init__(
        self, db: asyncpg.Pool, matrix: MatrixClient, names: Names, city_rooms: RoomService
    ) -> None:
        self._db = db
        self._city_rooms = city_rooms  # writes the mapping: the bridge never writes city tables
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

    async def for_alias_query(self, city_room_id: str) -> str | None:
        """Synapse asks for the alias: the Matrix room, created now if nobody is at it.

        None (answered 404) when there is no such city room, or when the room is being
        created right now (this process or another) — never waits for that.
        """
        known = self._known.get(city_room_id)
        if known is not None:
            return known
        room = await room_sql.get_room(self._db, city_room_id)
        if room is None:
            return None
        if room.matrix_room_id is not None:
            self._known[room.id] = room.matrix_room_id
            return room.matrix_room_id
        if self._locks[room.id].locked():
            return None
        return await self._create_locked(room, wait=False)

    async def ensure(self, room: Room) -> str:
        if room.matrix_room_id is not None:
            self._known[room.id] = room.matrix_room_id
            return room.matrix_room_id
        known = self._known.get(room.id)
        if known is not None:
            return known
        created = await self._create_locked(room, wait=True)
        assert created is not None
        return created

    async def _create_locked(self, room: Room, *, wait: bool) -> str | None:
        async with self._locks[room.id]:
            known = self._known.get(room.id)
            if known is not None:
                return known
            async with self._db.acquire() as conn, conn.transaction():
                if wait:
                    await conn.execute(
                        "select pg_advisory_xact_lock(hashtextextended($1 || $2::text, 0))",
                        _CREATE_LOCK,
                        room.id,
                    )
                elif not await conn.fetchval(
                    "select pg_try_advisory_xact_lock(hashtextextended($1 || $2::text, 0))",
                    _CREATE_LOCK,
                    room.id,
                ):
                    return None  # another process is creating it
                fresh = await room_sql.get_room(conn, room.id)
                if fresh is None:
                    return None  # deleted meanwhile
                matrix_room_id = fresh.matrix_room_id
                if matrix_room_id is None:
                    matrix_room_id = await self._create(fresh)
                    alias = self._names.alias_for(room.id)
                    await self._city_rooms.record_matrix_mapping(
                        room.id, matrix_room_id, alias, db=conn
                    )
            self._known[room.id] = matrix_room_id
            return matrix_room_id

    async def _create(self, room: Room) -> str:
        """Create the Matrix room and bind its alias last, or adopt the alias's room."""
        alias = self._names.alias_for(room.id)
        existing = await self._matrix.resolve_alias(alias)
        if existing is not None:
            return await self._adopt(existing, alias)
        matrix_room_id = await self._matrix.create_room(
            alias_localpart=None, name=room.name, topic=room.description, visibility="private"
        )
        try:
            await self._matrix.set_alias(alias, matrix_room_id)
        except MatrixError as exc:
            if exc.status != 409:
                raise
            # Bound meanwhile outside this database's knowledge: theirs wins.
            taken = await self._matrix.resolve_alias(alias)
            if taken is None:
                raise
            await self._abandon(matrix_room_id)
            return await self._adopt(taken, alias)
        # The alias now names a complete, joinable room; the rest is cosmetic.
        try:
            await self._matrix.set_state(matrix_room_id, "m.room.canonical_alias", {"alias": alias})
        except MatrixError as exc:
            log.warning("setting the canonical alias of %s failed: %s", matrix_room_id, exc)
        try:
            await self._matrix.publish_room(matrix_room_id)
        except MatrixError as exc:
            # room_list_publication_rules may forbid it; joining by alias still works.
            log.info("%s not listed in the room directory: %s", alias, exc)
        log.info("created Matrix room %s %s for %s", matrix_room_id, alias, room.id)
        return matrix_room_id

    async def _adopt(self, matrix_room_id: str, alias: str) -> str:
        # Created by an earlier database (same bot): make sure the bot is in it.
        await self._matrix.join(matrix_room_id, self._names.bot)
        log.info("adopted Matrix room %s %s", matrix_room_id, alias)
        return matrix_room_id

    async def _abandon(self, matrix_room_id: str) -> None:
        try:
            await self._matrix.leave(matrix_room_id, self._names.bot)
        except MatrixError as exc:
            log.warning("leaving the unused room %s failed: %s", matrix_room_id, exc)
