"""City typing → the ghost types in Matrix (SPEC §13).

`hooks.typing_changed` (gateway/realtime/typing.py: coalesced per user and room,
`true` repeated every 15 s while the user keeps typing, `false` on stop, send, leave,
socket close or a 30 s silence) becomes `PUT /rooms/{room}/typing/{ghost}` as the
ghost, `timeout` `GHOST_TYPING_TIMEOUT_MS`: a little longer than the city's refresh,
so a ghost whose process died stops typing by itself, as mautrix ghosts do (they
type with a timeout and stop explicitly when the remote side says so or sends).

Per (room, ghost) the PUTs go one at a time and only the newest state is sent, so a
slow `true` never lands after the `false` that followed it. Synapse counts /typing
as activity (it may bump an `unavailable` ghost online): the PUT goes through
`MatrixClient.request` as the ghost, so `on_acted_as` lets the presence mirror
re-assert the city's state (bridge/presence.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.ghosts import Ghosts
from bridge.matrix import MatrixClient
from bridge.naming import Names
from bridge.rooms import RoomMapper

log = logging.getLogger(__name__)

GHOST_TYPING_TIMEOUT_MS = 20_000


class GhostTyping:
    def __init__(
        self,
        matrix: MatrixClient,
        names: Names,
        rooms: RoomMapper,
        ghosts: Ghosts,
        *,
        ready: Callable[[], bool],
    ) -> None:
        self._matrix = matrix
        self._names = names
        self._rooms = rooms
        self._ghosts = ghosts
        self._ready = ready
        self._seq = 0
        # (city room, user) -> (typing, sequence) newest wanted; and keys being sent
        self._wanted: dict[tuple[str, str], tuple[bool, int]] = {}
        self._busy: set[tuple[str, str]] = set()
        self.sent = 0

    async def on_city_typing(self, room_id: str, user_id: str, typing: bool) -> None:
        """The `typing_changed` hook."""
        if not self._ready():
            return  # Synapse is away: typing is not worth queueing
        key = (room_id, user_id)
        self._seq += 1
        self._wanted[key] = (typing, self._seq)
        if key in self._busy:
            return  # the running sender picks the newest state up
        self._busy.add(key)
        done = 0
        try:
            while True:
                wanted, seq = self._wanted[key]
                if seq == done:
                    break
                done = seq
                await self._send(room_id, user_id, wanted)
        finally:
            self._busy.discard(key)
            if self._wanted.get(key, (False, -1))[1] == done:
                del self._wanted[key]

    async def _send(self, room_id: str, user_id: str, typing: bool) -> None:
        try:
            matrix_room = self._rooms.cached(room_id) or await self._rooms.matrix_room_for(room_id)
            if matrix_room is None:
                return
            ghost = self._names.ghost_for(user_id)
            if not typing and not self._ghosts.is_joined_cached(ghost, matrix_room):
                return  # a ghost that never typed or spoke there has nothing to stop
            await self._ghosts.ensure(ghost)
            await self._ghosts.ensure_joined(ghost, matrix_room)
            await self._matrix.set_typing(matrix_room, ghost, typing, GHOST_TYPING_TIMEOUT_MS)
            self.sent += 1
        except Exception as exc:
            # Ephemeral: a lost typing notice is not retried (the next one replaces it).
            log.info("typing of %s in %s not sent to Matrix: %s", user_id, room_id, exc)
