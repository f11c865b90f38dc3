"""Who may redact others' events in a bridged room: its `m.room.power_levels`."""

from __future__ import annotations

import logging
import time
from typing import Any

from bridge.matrix import MatrixClient, MatrixError

log = logging.getLogger(__name__)

# How long a room's power levels are trusted without asking Synapse again. A change
# arriving in a transaction to this process drops the cached copy at once; the TTL
# bounds how stale another process's copy can be.
POWER_LEVELS_TTL_SECONDS = 10.0
POWER_LEVELS_EVENT = "m.room.power_levels"


class PowerLevels:
    """Who may redact others' events in a room: its `m.room.power_levels`, read as the
    bot through the client-server API and cached briefly per room.

    Synapse delivers redactions from unprivileged federated users (room versions ≥ 3
    check them only when serving), so the inbox asks this before applying one.
    """

    def __init__(
        self, matrix: MatrixClient, bot: str, ttl_seconds: float = POWER_LEVELS_TTL_SECONDS
    ) -> None:
        self._matrix = matrix
        self._bot = bot
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def invalidate(self, matrix_room_id: str) -> None:
        self._cache.pop(matrix_room_id, None)

    async def can_redact(self, matrix_room_id: str, user_id: str) -> bool:
        """`user_id` has the room's `redact` level. Synapse unreachable: raises (retry)."""
        content = await self._content(matrix_room_id)
        if content is None:
            return False  # no power levels we can read: only authors may redact
        users = content.get("users")
        level = users.get(user_id) if isinstance(users, dict) else None
        if level is None:
            level = content.get("users_default", 0)
        return _level(level, 0) >= _level(content.get("redact", 50), 50)

    async def _content(self, matrix_room_id: str) -> dict[str, Any] | None:
        cached = self._cache.get(matrix_room_id)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            content = await self._matrix.state(
                matrix_room_id, POWER_LEVELS_EVENT, user_id=self._bot
            )
        except MatrixError as exc:
            if exc.transient:
                raise
            # 403: the bot is not in the room; nobody there is privileged for us.
            log.warning("reading the power levels of %s failed: %s", matrix_room_id, exc)
            content = None
        self._cache[matrix_room_id] = (now + self._ttl, content)
        return content


def _level(value: Any, default: int) -> int:
    """A power level as Matrix allows it (old rooms may carry integers as strings)."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default
