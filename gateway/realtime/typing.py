"""City users' typing: `room.typing` frames, coalesced, with a timeout (SPEC §13).

A client says `{"event":"room.typing","room_id","typing":true|false}` as often as it
likes (on every keystroke, say); what leaves the process is per user and room:

* **Transitions**, at most one frame per `MIN_GAP_SECONDS`: a change inside the gap
  is held and the *latest* state goes out at the gap's end (true → false → true in
  a burst costs one frame, or none). A user with many sockets is one typist: they
  type while any of their sockets of this process says so.
* **Refresh**: while the client keeps saying `true`, `true` goes out again at most
  every `REPUBLISH_SECONDS` (receivers time typing out; late joiners learn of it;
  the bridge refreshes the ghost's Matrix typing timeout with it).
* **Timeout**: a `true` not repeated within `TIMEOUT_SECONDS` ends as `false`, as
  Matrix typing does. It also ends at once when the user posts a message in the
  room (REST or socket, seen on the process holding the socket), leaves it, or the
  socket closes.

Each frame goes to the room's sockets on every process (fanout) and, through
`hooks.typing_changed`, to the bridge, which makes the user's ghost type.
Everything is in memory: typing is cheap ephemeral data, lost with its process (a
receiver's own timeout clears it then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from gateway.core.events import CityHooks
from gateway.infra.tasks import TaskGroup
from gateway.realtime import wsproto
from gateway.realtime.fanout import RoomFanout
from gateway.realtime.sockets import ClientSocket

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
REPUBLISH_SECONDS = 15.0
MIN_GAP_SECONDS = 1.0

TYPING_FRAMES = Counter(
    "city_ws_typing_frames",
    "City typing frames from clients: published (a frame went out) or coalesced",
    ["outcome"],
)


@dataclass(slots=True)
class _Typist:
    """One user in one room on this process."""

    deadlines: dict[ClientSocket, float] = field(default_factory=dict)  # monotonic
    published: bool = False
    published_at: float = -1e9
    refreshed: bool = False  # a `true` arrived since the last publish
    timer: asyncio.TimerHandle | None = None


class TypingTracker:
    def __init__(self, fanout: RoomFanout, hooks: CityHooks) -> None:
        self._fanout = fanout
        self._hooks = hooks
        self._typists: dict[tuple[str, str], _Typist] = {}
        self._tasks = TaskGroup("realtime.typing", log)

    def set(self, sock: ClientSocket, room_id: str, typing: bool) -> None:
        """A client's `room.typing` (the socket follows the room)."""
        key = (room_id, sock.user_id)
        typist = self._typists.get(key)
        if typist is None:
            if not typing:
                TYPING_FRAMES.labels("coalesced").inc()
                return
            typist = self._typists[key] = _Typist()
        if typing:
            typist.deadlines[sock] = time.monotonic() + TIMEOUT_SECONDS
            typist.refreshed = True
        else:
            typist.deadlines.pop(sock, None)
        if not self._settle(key, typist):
            TYPING_FRAMES.labels("coalesced").inc()

    def stop_socket(self, sock: ClientSocket, room_id: str) -> None:
        """The socket left the room (or closed)."""
        key = (room_id, sock.user_id)
        typist = self._typists.get(key)
        if typist is not None and typist.deadlines.pop(sock, None) is not None:
            self._settle(key, typist)

    def stop_user(self, room_id: str, user_id: str) -> None:
        """The user posted a message in the room: they are no longer typing."""
        key = (room_id, user_id)
        typist = self._typists.get(key)
        if typist is not None and typist.deadlines:
            typist.deadlines.clear()
            self._settle(key, typist, urgent=True)

    def typing_users(self, room_id: str) -> list[str]:
        """Users of this process shown as typing in a room (for tests and debugging)."""
        return [u for (r, u), t in self._typists.items() if r == room_id and t.published]

    async def aclose(self) -> None:
        for typist in self._typists.values():
            if typist.timer is not None:
                typist.timer.cancel()
        self._typists.clear()
        await self._tasks.aclose()

    # --- the state machine ------------------------------------------------------------
    def _settle(self, key: tuple[str, str], typist: _Typist, *, urgent: bool = False) -> bool:
        """Publish what is due now, schedule what is due later; True if published.

        `urgent`: a `false` after a post goes out at once (the message itself already
        told the room the user stopped), without waiting for the gap.
        """
        now = time.monotonic()
        for sock in [s for s, deadline in typist.deadlines.items() if deadline <= now]:
            del typist.deadlines[sock]
        wanted = bool(typist.deadlines)
        due = wanted != typist.published or (
            wanted and typist.refreshed and now - typist.published_at >= REPUBLISH_SECONDS
        )
        published = False
        next_at: float | None = None
        if due:
            gap_ends = typist.published_at + MIN_GAP_SECONDS
            if now >= gap_ends or (urgent and not wanted):
                self._publish(key, wanted)
                typist.published, typist.published_at = wanted, now
                typist.refreshed = False
                published = True
            else:
                next_at = gap_ends
        if typist.deadlines:
            earliest = min(typist.deadlines.values())
            next_at = earliest if next_at is None else min(next_at, earliest)
        if typist.timer is not None:
            typist.timer.cancel()
            typist.timer = None
        if next_at is not None:
            loop = asyncio.get_running_loop()
            typist.timer = loop.call_at(
                loop.time() + max(0.0, next_at - now) + 0.001, self._on_timer, key
            )
        elif not typist.published:
            del self._typists[key]
        return published

    def _on_timer(self, key: tuple[str, str]) -> None:
        typist = self._typists.get(key)
        if typist is not None:
            typist.timer = None
            self._settle(key, typist)

    def _publish(self, key: tuple[str, str], typing: bool) -> None:
        room_id, user_id = key
        TYPING_FRAMES.labels("published").inc()
        self._fanout.publish(room_id, wsproto.room_typing_frame(room_id, typing, user_id=user_id))
        if self._hooks.typing_changed:
            self._tasks.spawn(self._hooks.emit_typing(room_id, user_id, typing))
