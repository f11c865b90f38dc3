"""Matrix → City: the appservice's ephemeral events (typing, presence).

With `receive_ephemeral: true` in the registration (MSC2409, stable since Matrix
1.x; Synapse 1.163 honours it and the unstable `de.sorunome.msc2409.push_ephemeral`)
Synapse adds the EDUs of rooms and users we are interested in to each transaction, as
`ephemeral` (stable) or `de.sorunome.msc2409.ephemeral` (unstable); both are read.

* `m.typing {room_id, content.user_ids}` carries everyone typing in the room now.
  Like mautrix portals (`handle_matrix_typing`: the new set against the portal's
  previous set), the list is diffed against the previous one for the room, kept in
  Redis so that whichever process gets the next transaction diffs against the last
  one: real users who started get `room.typing {matrix_user_id, typing: true}`,
  those who left the list `typing: false`. Our ghosts and bots are dropped first
  (their typing is the echo of the city's own).
* `m.presence {sender, content.presence}`: our own users' presence (every ghost
  change the mirror makes comes back) is dropped on a string-prefix check before
  anything else; a real user's status is compared with the last one stored and,
  when it changed, becomes `room.presence {matrix_user_id, status}` (Matrix's names)
  in every bridged city room they are joined to.
* Anything else (receipts, to-device) is ignored, and counted.

Ephemeral data is never retried: handling it never fails the transaction.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter

from bridge.members import MATRIX_STATUSES, MatrixRoster
from bridge.naming import Names
from gateway.core.ports import MatrixRoomActivity
from gateway.core.storage import rooms as room_sql

log = logging.getLogger(__name__)

STABLE = "ephemeral"
UNSTABLE = "de.sorunome.msc2409.ephemeral"
# A room's typing list is forgotten this long after its last change (Synapse times
# typing out after ≤ 2 min and tells us; this only bounds Redis).
TYPING_KEY_TTL_SECONDS = 600
_NOT_BRIDGED_CACHE_SECONDS = 60.0

EPHEMERAL_EVENTS = Counter(
    "city_matrix_ephemeral_events",
    "Ephemeral events Synapse pushed, by type and what became of them"
    " (frames: sent to city sockets; ours: our own users, dropped; unchanged; ignored)",
    ["type", "outcome"],
)


def ephemeral_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A transaction's ephemeral events, under the stable or the unstable name."""
    events = body.get(STABLE)
    if not isinstance(events, list):
        events = body.get(UNSTABLE)
    if not isinstance(events, list):
        return []
    return [e for e in events if isinstance(e, dict)]


class EphemeralHandler:
    def __init__(
        self,
        redis: aioredis.Redis,
        db: asyncpg.Pool,
        names: Names,
        roster: MatrixRoster,
        activity: MatrixRoomActivity,
        *,
        prefix: str,
    ) -> None:
        self._redis = redis
        self._db = db
        self._names = names
        self._roster = roster
        self._activity = activity
        self._typing_prefix = f"{prefix}matrix:typing:"
        self._ghost_prefix = f"@{names.ghost_prefix}"
        self._server_suffix = f":{names.server_name}"
        # Matrix room -> city room (rooms are never unmapped); recent misses.
        self._city_rooms: dict[str, str] = {}
        self._not_bridged: dict[str, float] = {}

    async def handle(self, events: list[dict[str, Any]]) -> None:
        """One transaction's ephemeral events; never raises."""
        presence: dict[str, str] = {}  # sender -> newest status in this transaction
        for event in events:
            kind = event.get("type")
            try:
                if kind == "m.typing":
                    await self._typing(event)
                elif kind == "m.presence":
                    sender = event.get("sender")
                    content = event.get("content")
                    if not isinstance(sender, str) or not isinstance(content, dict):
                        EPHEMERAL_EVENTS.labels("m.presence", "ignored").inc()
                    elif self._is_ours(sender):
                        EPHEMERAL_EVENTS.labels("m.presence", "ours").inc()
                    elif content.get("presence") in MATRIX_STATUSES:
                        # Synapse may list one user several times in a transaction.
                        presence[sender] = str(content["presence"])
                    else:
                        EPHEMERAL_EVENTS.labels("m.presence", "ignored").inc()
                else:
                    EPHEMERAL_EVENTS.labels("other", "ignored").inc()
            except Exception:
                log.exception("ephemeral %s event failed", kind)
        for sender, status in presence.items():
            try:
                await self._presence(sender, status)
            except Exception:
                log.exception("presence of %s failed", sender)

    def _is_ours(self, user_id: str) -> bool:
        # The cheap test first: nearly all of our own are ghosts.
        if user_id.startswith(self._ghost_prefix) and user_id.endswith(self._server_suffix):
            return True
        return self._names.is_ours(user_id)

    async def _typing(self, event: dict[str, Any]) -> None:
        room_id = event.get("room_id")
        content = event.get("content")
        ids = content.get("user_ids") if isinstance(content, dict) else None
        if not isinstance(room_id, str) or not isinstance(ids, list):
            EPHEMERAL_EVENTS.labels("m.typing", "ignored").inc()
            return
        now = sorted({u for u in ids if isinstance(u, str) and not self._is_ours(u)})
        city_room = await self._city_room(room_id)
        if city_room is None:
            EPHEMERAL_EVENTS.labels("m.typing", "ignored").inc()
            return
        key = self._typing_prefix + room_id
        if now:
            raw = await self._redis.set(
                key, orjson.dumps(now).decode(), ex=TYPING_KEY_TTL_SECONDS, get=True
            )
        else:
            raw = await self._redis.getdel(key)
        before = set(orjson.loads(raw)) if isinstance(raw, str | bytes) and raw else set()
        started = [u for u in now if u not in before]
        stopped = sorted(before - set(now))
        if not started and not stopped:
            # Only our ghosts changed (the city's own typing echoed back), or a re-send.
            EPHEMERAL_EVENTS.labels("m.typing", "unchanged").inc()
            return
        EPHEMERAL_EVENTS.labels("m.typing", "frames").inc()
        for user_id in started:
            self._activity.matrix_typing(city_room, user_id, True)
        for user_id in stopped:
            self._activity.matrix_typing(city_room, user_id, False)

    async def _presence(self, user_id: str, status: str) -> None:
        previous = await self._roster.record_presence(user_id, status)
        if previous == status:
            EPHEMERAL_EVENTS.labels("m.presence", "unchanged").inc()
            return
        EPHEMERAL_EVENTS.labels("m.presence", "frames").inc()
        for matrix_room in await self._roster.rooms_of(user_id):
            city_room = await self._city_room(matrix_room)
            if city_room is not None:
                self._activity.matrix_presence(city_room, user_id, status)

    async def _city_room(self, matrix_room_id: str) -> str | None:
        known = self._city_rooms.get(matrix_room_id)
        if known is not None:
            return known
        missed = self._not_bridged.get(matrix_room_id)
        if missed is not None and time.monotonic() - missed < _NOT_BRIDGED_CACHE_SECONDS:
            return None
        room = await room_sql.get_room_by_matrix_id(self._db, matrix_room_id)
        if room is None:
            if len(self._not_bridged) > 10_000:
                self._not_bridged.clear()
            self._not_bridged[matrix_room_id] = time.monotonic()
            return None
        self._city_rooms[matrix_room_id] = room.id
        # A room the city hears of for the first time: learn who is in it.
        await self._roster.ensure_seeded(matrix_room_id)
        return room.id
