"""Whom this process last heard was online or away: the memory that survives Redis.

Redis losing its data (a restart without persistence, a failover to an empty
replica) must not leave anyone stuck: the presence service re-declares the users
remembered here through the engine's `seed` (gateway/core/presence/service.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson

from gateway.core.presence.types import Status

log = logging.getLogger(__name__)

# Users a process remembers as online/away, for re-declaring them after Redis lost
# its data (~150 bytes each); past it the oldest news is forgotten.
MAX_KNOWN_USERS = 100_000
_LIVE: dict[str, Status] = {"online": "online", "away": "away"}


@dataclass(slots=True)
class _Known:
    status: Status
    last_active_ago: int  # ms, as of `at`
    at: float  # time.monotonic() when heard
    seq: int  # KnownUsers.seq when heard


class KnownUsers:
    """Whom this process last heard was online or away (bounded, oldest news dropped).

    Fed by every `presence.update` from the channel (all processes' transitions) and
    by this process's own announcements (in case their PUBLISH failed).
    """

    def __init__(self, limit: int = MAX_KNOWN_USERS) -> None:
        self._limit = limit
        self._users: dict[str, _Known] = {}
        self.seq = 0  # bumped on every note: tells a catch-up what it raced with

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> _Known | None:
        return self._users.get(user_id)

    def note(self, user_id: str, status: str, last_active_ago: int) -> None:
        self.seq += 1
        users = self._users
        users.pop(user_id, None)  # re-inserted last: dict order is news order
        if status in _LIVE:
            if len(users) >= self._limit:
                del users[next(iter(users))]
            users[user_id] = _Known(_LIVE[status], last_active_ago, time.monotonic(), self.seq)

    def note_frame(self, payload: str) -> None:
        try:
            frame = orjson.loads(payload)
            self.note(frame["user_id"], frame["status"], int(frame["last_active_ago"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable presence update on the channel")

    def snapshot(self) -> list[tuple[str, Status, int]]:
        """(user, status, last_active_ago now) of everyone remembered."""
        now = time.monotonic()
        return [
            (user_id, k.status, k.last_active_ago + round((now - k.at) * 1000))
            for user_id, k in self._users.items()
        ]
