"""The Matrix side of a city room's members, kept in Redis (SPEC §13).

Who is joined to a bridged Matrix room is learnt from the `m.room.member` events in
the transactions Synapse pushes (the inbox's `listeners.events`, once cluster-wide)
and seeded from `GET /rooms/{id}/joined_members` as the bot the first time a room is
needed (its members list, a presence change of one of its users) and again after
`SEED_TTL_SECONDS`, which bounds the drift a lost event could cause to one call per
room per hour. Only real Matrix users are kept: our ghosts, the bot and Second Me
are the city's own. Presence comes from the appservice's ephemeral `m.presence`
events (bridge/ephemeral.py); a user we have not heard about is asked for once.

Redis layout (under `CITY_REDIS_PREFIX`; `{matrix}` is a Redis Cluster hash tag, so
every roster key lives in one slot):

    {matrix}:members:<matrix room>   HASH  user id -> display name ("" when none)
    {matrix}:seeded:<matrix room>    STR   set while the hash is fresh (TTL 1 h)
    {matrix}:rooms_of:<user id>      SET   Matrix rooms the user is joined to
    {matrix}:presence:<user id>      STR   online | unavailable | offline (TTL 1 day)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bridge.matrix import MatrixClient
from bridge.naming import Names
from gateway.core.ports import MatrixMember
from gateway.core.storage import rooms as room_sql

log = logging.getLogger(__name__)

SEED_TTL_SECONDS = 3600
PRESENCE_TTL_SECONDS = 24 * 3600
# A presence we asked Synapse for (not pushed): re-asked after this.
ASKED_PRESENCE_TTL_SECONDS = 300
# Presence asked of Synapse per members request at most; the rest show "offline"
# until Synapse pushes a change.
MAX_PRESENCE_LOOKUPS = 20
MATRIX_STATUSES = frozenset({"online", "unavailable", "offline"})


class MatrixRoster:
    """Implements gateway.core.ports.MatrixMembers for the bridge."""

    def __init__(
        self,
        redis: aioredis.Redis,
        db: asyncpg.Pool,
        matrix: MatrixClient,
        names: Names,
        *,
        prefix: str,
        ready: Callable[[], bool],
    ) -> None:
        self._redis = redis
        self._db = db
        self._matrix = matrix
        self._names = names
        # One hash tag for every roster key: its pipelines and MGETs span several of
        # them, which a Redis Cluster allows only within one slot (the roster is small:
        # joined real Matrix users, not city users). Same layout on a single Redis.
        self._p = f"{prefix}{{matrix}}:"
        self._ready = ready
        self._seeding: dict[str, asyncio.Future[None]] = {}

    def _members_key(self, matrix_room_id: str) -> str:
        return f"{self._p}members:{matrix_room_id}"

    def _seeded_key(self, matrix_room_id: str) -> str:
        return f"{self._p}seeded:{matrix_room_id}"

    def rooms_key(self, user_id: str) -> str:
        return f"{self._p}rooms_of:{user_id}"

    def presence_key(self, user_id: str) -> str:
        return f"{self._p}presence:{user_id}"

    # --- the port -----------------------------------------------------------------
    async def members(self, city_room_id: str) -> list[MatrixMember]:
        room = await room_sql.get_room(self._db, city_room_id)
        if room is None or room.matrix_room_id is None:
            return []
        matrix_room = room.matrix_room_id
        await self.ensure_seeded(matrix_room)
        joined = {
            _text(u): _text(n)
            for u, n in (await self._redis.hgetall(self._members_key(matrix_room))).items()
        }
        users = sorted(joined)
        if not users:
            return []
        statuses = await self._redis.mget([self.presence_key(u) for u in users])
        known = {u: s for u, s in zip(users, statuses, strict=True) if s in MATRIX_STATUSES}
        missing = [u for u in users if u not in known][:MAX_PRESENCE_LOOKUPS]
        if missing and self._ready():
            asked = await asyncio.gather(*(self._ask_presence(u) for u in missing))
            known.update({u: s for u, s in zip(missing, asked, strict=True) if s is not None})
        return [MatrixMember(u, joined[u] or None, known.get(u, "offline")) for u in users]

    # --- membership -----------------------------------------------------------------
    async def ensure_seeded(self, matrix_room_id: str) -> None:
        """Load the room's joined users from Synapse unless that was done lately."""
        if await self._redis.exists(self._seeded_key(matrix_room_id)):
            return
        if not self._ready():
            return  # Synapse is away: serve what events taught us
        running = self._seeding.get(matrix_room_id)
        if running is None:
            running = asyncio.ensure_future(self._seed(matrix_room_id))
            self._seeding[matrix_room_id] = running
            running.add_done_callback(lambda _: self._seeding.pop(matrix_room_id, None))
        try:
            await asyncio.shield(running)
        except Exception as exc:
            log.warning("loading the members of %s failed: %s", matrix_room_id, exc)

    async def _seed(self, matrix_room_id: str) -> None:
        joined = await self._matrix.joined_members(matrix_room_id)
        real = {u: name or "" for u, name in joined.items() if not self._names.is_ours(u)}
        key = self._members_key(matrix_room_id)
        before = [_text(u) for u in await self._redis.hkeys(key)]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if real:
                mapping: dict[Any, Any] = real
                pipe.hset(key, mapping=mapping)
            for user_id in real:
                pipe.sadd(self.rooms_key(user_id), matrix_room_id)
            for user_id in set(before) - set(real):
                pipe.srem(self.rooms_key(user_id), matrix_room_id)
            pipe.set(self._seeded_key(matrix_room_id), "1", ex=SEED_TTL_SECONDS)
            await pipe.execute()
        log.debug("members of %s loaded: %d real users", matrix_room_id, len(real))

    async def on_event(self, event: dict[str, Any]) -> None:
        """Inbox listener: `m.room.member` of a real user updates the roster."""
        if event.get("type") != "m.room.member":
            return
        user_id, room_id = event.get("state_key"), event.get("room_id")
        content = event.get("content")
        if not isinstance(user_id, str) or not isinstance(room_id, str):
            return
        if not isinstance(content, dict) or self._names.is_ours(user_id):
            return
        key = self._members_key(room_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if content.get("membership") == "join":
                name = content.get("displayname")
                pipe.hset(key, user_id, name if isinstance(name, str) else "")
                pipe.sadd(self.rooms_key(user_id), room_id)
            else:
                pipe.hdel(key, user_id)
                pipe.srem(self.rooms_key(user_id), room_id)
            await pipe.execute()

    async def occupied(self, matrix_room_ids: Collection[str]) -> set[str]:
        """The rooms (of these) where at least one real Matrix user is joined.

        For the presence mirror (bridge/presence_audience.py). Rooms never loaded are
        seeded first; one that still cannot be (Synapse away, the bot not in it) counts
        as occupied: a few PUTs too many rather than a ghost hidden from someone.
        """
        rooms = sorted(set(matrix_room_ids))
        if not rooms:
            return set()
        counts = await self._counts(rooms)
        unseeded = [r for r, (seeded, _) in counts.items() if not seeded]
        if unseeded:
            limit = asyncio.Semaphore(8)

            async def seed(room: str) -> None:
                async with limit:
                    await self.ensure_seeded(room)

            await asyncio.gather(*(seed(r) for r in unseeded))
            counts.update(await self._counts(unseeded))
        return {r for r, (seeded, joined) in counts.items() if joined > 0 or not seeded}

    async def _counts(self, rooms: list[str]) -> dict[str, tuple[bool, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.exists(self._seeded_key(room))
                pipe.hlen(self._members_key(room))
            found = await pipe.execute()
        return {r: (bool(found[2 * i]), int(found[2 * i + 1])) for i, r in enumerate(rooms)}

    async def rooms_of(self, user_id: str) -> list[str]:
        """Matrix rooms (bridged or not) the real user is joined to, as far as we know."""
        rooms = await self._redis.smembers(self.rooms_key(user_id))
        return sorted(_text(r) for r in rooms)

    # --- presence ---------------------------------------------------------------------
    async def record_presence(self, user_id: str, status: str) -> str | None:
        """Store a pushed presence; the previous one (None if unknown)."""
        previous = await self._redis.set(
            self.presence_key(user_id), status, ex=PRESENCE_TTL_SECONDS, get=True
        )
        return _text(previous) if isinstance(previous, str | bytes) else None

    async def _ask_presence(self, user_id: str) -> str | None:
        try:
            status = await self._matrix.get_presence(user_id)
        except Exception as exc:
            log.debug("presence of %s not available: %s", user_id, exc)
            return None
        if status not in MATRIX_STATUSES:
            return None
        # NX: a pushed update that arrived meanwhile is newer than our answer.
        await self._redis.set(
            self.presence_key(user_id), status, ex=ASKED_PRESENCE_TTL_SECONDS, nx=True
        )
        return status


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
