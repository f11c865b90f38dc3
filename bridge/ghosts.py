"""Ghosts: the Matrix users the bridge puppets, registered lazily and kept in sync.

A ghost is registered only when its city user posts (the outbox), or when the
presence mirror sends the presence of a ghost a Matrix user can see (such a ghost
has joined a room, so it exists already): a heartbeat alone registers nobody
(issue 13). Never for an id Synapse asks about (`known` answers the appservice
user query).

Synapse is the source of truth for whether a user exists; `matrix_ghosts` remembers
what we already did (registered, display name set) so a restart or another process
does not repeat it, and this process also caches it in memory for the hot path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from bridge import storage
from bridge.matrix import MatrixClient
from bridge.naming import Names, split_user_id
from gateway.core.storage import Executor

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class KeyedLocks(Generic[K]):
    """One asyncio lock per key, dropped when nobody holds or waits for it.

    A `defaultdict(asyncio.Lock)` keeps a lock for every ghost ever seen; this map
    holds only the keys in use right now.
    """

    def __init__(self) -> None:
        self._locks: dict[K, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Ghosts:
    def __init__(self, db: Executor, matrix: MatrixClient, names: Names) -> None:
        self._db = db
        self._matrix = matrix
        self._names = names
        self._registered: set[str] = set()
        self._display: dict[str, str] = {}
        self._joined: set[tuple[str, str]] = set()
        # One registration / rename / join at a time per user, so concurrent rooms
        # sending for the same ghost do not repeat the same call.
        self._locks: KeyedLocks[str] = KeyedLocks()
        self._join_locks: KeyedLocks[tuple[str, str]] = KeyedLocks()

    async def known(self, user_id: str) -> bool:
        """One of our fixed users, or a ghost of a city user the city has seen.

        "Seen" = the bridge has a row for the ghost: it registered it for a message
        (a heartbeat alone makes no row since issue 13). Nothing else ever creates a ghost, so an
        id Synapse merely asks about (an invite, a profile lookup) is not one.
        """
        if user_id in (self._names.bot, self._names.secondme):
            return True
        if user_id in self._registered:
            return True
        if self._names.city_id_of_ghost(user_id) is None:
            return False
        return await storage.get_ghost(self._db, user_id) is not None

    async def ensure(self, user_id: str, display_name: str | None = None) -> None:
        """The user exists on Synapse and (if given) shows `display_name`."""
        if user_id in self._registered and (
            display_name is None or self._display.get(user_id) == display_name
        ):
            return
        async with self._locks.hold(user_id):
            if user_id not in self._registered:
                known = await storage.get_ghost(self._db, user_id)
                if known is None or not known.registered:
                    parts = split_user_id(user_id)
                    assert parts is not None, user_id
                    await self._matrix.register(parts[0])
                    await storage.mark_registered(
                        self._db, user_id, self._names.city_id_of_ghost(user_id)
                    )
                    log.info("registered Matrix user %s", user_id)
                elif known.display_name is not None:
                    self._display[user_id] = known.display_name
                self._registered.add(user_id)
            if display_name is not None and self._display.get(user_id) != display_name:
                known = await storage.get_ghost(self._db, user_id)
                if known is None or known.display_name != display_name:
                    await self._matrix.set_displayname(user_id, display_name)
                    await storage.set_display_name(self._db, user_id, display_name)
                self._display[user_id] = display_name

    def is_joined_cached(self, user_id: str, matrix_room_id: str) -> bool:
        """This process joined (or found joined) the user to the room."""
        return (user_id, matrix_room_id) in self._joined

    async def ensure_joined(self, user_id: str, matrix_room_id: str) -> None:
        key = (user_id, matrix_room_id)
        if key in self._joined:
            return
        # Per (user, room): one ghost joining several rooms at once is fine.
        async with self._join_locks.hold(key):
            if key in self._joined:
                return
            if not await storage.is_member(self._db, user_id, matrix_room_id):
                # Joining a public room we are already in is a no-op on Synapse.
                await self._matrix.join(matrix_room_id, user_id)
                await storage.set_member(self._db, user_id, matrix_room_id, True)
            self._joined.add(key)

    async def forget_membership(self, user_id: str, matrix_room_id: str) -> None:
        """After a 403 (kicked, left): the next ensure_joined joins again."""
        self._joined.discard((user_id, matrix_room_id))
        await storage.set_member(self._db, user_id, matrix_room_id, False)
