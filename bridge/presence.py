"""City presence → the ghost's Matrix presence, and keeping it there.

Transitions arrive once cluster-wide through `hooks.presence_changed`; the target
state is written to `matrix_ghosts` and sent at once. Synapse drops a user that does
not /sync to offline `presence.sync_online_timeout` (30 s) after its last update, and
ghosts never sync, so online and unavailable ghosts are re-sent every
`MATRIX_PRESENCE_REFRESH_SECONDS` (20 s) by whichever process claims them first.

We refresh rather than raise `sync_online_timeout` because that setting is
server-wide: raising it would also keep real Element users "online" for that long
after they close their client, and the bridge must be correct on a homeserver whose
configuration it does not own. The cost is one small PUT per online ghost per 20 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from bridge import storage
from bridge.ghosts import Ghosts
from bridge.matrix import MatrixClient
from bridge.naming import Names
from gateway.storage import Executor

log = logging.getLogger(__name__)

CITY_TO_MATRIX = {"online": "online", "away": "unavailable", "offline": "offline"}
RETRY_SECONDS = 2.0
# The immediate send owns a fresh transition this long before a sweep may take it.
_IMMEDIATE_LEASE_SECONDS = 3.0


class PresenceMirror:
    def __init__(
        self,
        db: Executor,
        matrix: MatrixClient,
        names: Names,
        ghosts: Ghosts,
        *,
        refresh_seconds: float,
    ) -> None:
        self._db = db
        self._matrix = matrix
        self._names = names
        self._ghosts = ghosts
        self._refresh = refresh_seconds
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    async def on_transition(self, user_id: str, previous: str, status: str, ago: int) -> None:
        """The `presence_changed` hook: record the target, send it without blocking."""
        presence = CITY_TO_MATRIX.get(status)
        if presence is None:
            return
        ghost = self._names.ghost_for(user_id)
        await storage.set_presence_target(
            self._db, ghost, user_id, presence, _IMMEDIATE_LEASE_SECONDS
        )
        task = asyncio.create_task(self._send(ghost, presence))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, ghost: str, presence: str) -> None:
        # One send at a time per ghost in this process, so a slow "online" cannot
        # land after the "offline" that followed it.
        async with self._locks[ghost]:
            try:
                await self._ghosts.ensure(ghost)
                await self._matrix.set_presence(ghost, presence)
            except Exception as exc:
                log.warning("setting %s %s failed, retrying: %s", ghost, presence, exc)
                await storage.presence_retry(self._db, ghost, presence, RETRY_SECONDS)
                return
            self.sent += 1
            await storage.presence_delivered(self._db, ghost, presence, self._refresh)

    async def sweep(self) -> int:
        """Send what is due: refreshes of online ghosts, and failed sends."""
        due = await storage.claim_due_presence(self._db, self._refresh, 200)
        await asyncio.gather(*(self._send(ghost, presence) for ghost, _, presence in due))
        return len(due)

    async def run(self, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.sweep()
                except Exception:
                    log.exception("presence refresh sweep failed")
        finally:
            for task in list(self._tasks):
                task.cancel()
