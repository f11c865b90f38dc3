"""City presence → the ghost's Matrix presence, and keeping it there.

Transitions arrive once cluster-wide through `hooks.presence_changed`; the target
state is written to `matrix_ghosts` and sent. Four things keep Matrix equal to the
city:

- **Debounce** (`MATRIX_PRESENCE_DEBOUNCE_SECONDS`, SPEC §12). A ghost gets at most one
  presence PUT per window: the first change goes out at once, later ones only mark
  the ghost due, and one trailing PUT at the window's end sends the *latest* target,
  read from `matrix_ghosts` (where every process records its transitions), so the
  last state wins even when transitions of one user land on several processes. A
  flapping user costs one PUT per window instead of one per transition.
- **Refresh.** Synapse drops a user that does not /sync to offline
  `presence.sync_online_timeout` (30 s) after its last update, and ghosts never sync,
  so online and unavailable ghosts are re-sent every `MATRIX_PRESENCE_REFRESH_SECONDS`
  (20 s) by whichever process claims them first. We refresh rather than raise
  `sync_online_timeout` because that setting is server-wide (it would keep real
  Element users "online" long after they close their client) and the bridge must be
  correct on a homeserver whose configuration it does not own.
- **Re-assert after acting as the ghost** (issue 9 item 14). Synapse counts an
  `m.room.message` sent as a user as that user's activity: the event persister calls
  `_bump_active_time` (synapse/handlers/message.py, `EventCreationHandler`, for
  `EventTypes.Message` only), and `PresenceHandler.bump_presence_active_time`
  (synapse/handlers/presence.py) sets the device `ONLINE` "if it was unavailable";
  /typing, receipts and read markers bump too (synapse/rest/client/room.py,
  receipts.py, read_marker.py). Joins, display names and redactions do not, and an
  `offline` user stays offline (checked against Synapse 1.163). So after every write
  the bridge makes as a ghost (`MatrixClient.on_acted_as`), an `unavailable` ghost
  gets its state PUT again (debounced like any update); a PUT replaces the device's
  state, so it wins over the bump.
- **Reconcile** (issue 9 item 13). If Redis loses its data, the transitions it would
  have produced (a device expiring → offline) never come, and the refresh would keep
  a ghost online forever. Each refresh round compares the refreshed ghosts with the
  city's state and corrects a difference that lasted `PRESENCE_TTL_SECONDS`: a user
  who is still there heartbeats within that time and produces a real transition, so
  live users do not flicker to offline after a Redis restart.

All of this only for ghosts someone on Matrix can see (issue 13; the rule is in
bridge/presence_audience.py): a transition of a hidden ghost is recorded (if the
ghost has a row) but not sent, and nobody's heartbeat registers a ghost any more.
Mirroring starts when a real Matrix user joins a room holding the ghost, or the ghost
joins a room holding one (`on_member_event`, from the inbox's membership events,
once cluster-wide), with the city's current state. It stops when the last one
leaves: the next refresh finds the ghost hidden and parks it instead of sending
(no final `offline`: Synapse times a ghost that is no longer refreshed out by
itself, and nobody is there to see it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from bridge import metrics, storage
from bridge import presence_audience as audience_sql
from bridge.ghosts import Ghosts
from bridge.matrix import MatrixClient
from bridge.naming import Names
from bridge.presence_audience import HIDDEN_RECHECK_SECONDS, Audience
from gateway.core.storage import Executor

log = logging.getLogger(__name__)

CITY_TO_MATRIX = {"online": "online", "away": "unavailable", "offline": "offline"}
RETRY_SECONDS = 2.0
# The process that got a transition owns its send this long (plus the debounce
# window) before another process's sweep may take it over.
_IMMEDIATE_LEASE_SECONDS = 3.0
# Why a PUT is sent, weakest first: coalesced requests keep the strongest reason.
_REASONS = ("reassert", "refresh", "visible", "reconcile", "change")
# Reasons that are state updates (a replaced one counts as debounced).
_UPDATES = frozenset({"change", "reconcile", "visible"})

# City user ids → their city status ("online" / "away" / "offline"); None while the
# presence service is not running. Raises when Redis does not answer.
CityStatuses = Callable[[list[str]], Awaitable[dict[str, str] | None]]


@dataclass(slots=True)
class _Slot:
    """A ghost with a send in flight or a debounce window open (removed when quiet)."""

    due: bool
    wanted: str | None  # the state to send; None: read the latest target at send time
    reason: str


class PresenceMirror:
    def __init__(
        self,
        db: Executor,
        matrix: MatrixClient,
        names: Names,
        ghosts: Ghosts,
        *,
        refresh_seconds: float,
        debounce_seconds: float = 0.0,
        reconcile_after_seconds: float | None = None,
        city_statuses: CityStatuses | None = None,
        audience: Audience | None = None,
    ) -> None:
        self._db = db
        self._matrix = matrix
        self._names = names
        self._ghosts = ghosts
        self._refresh = refresh_seconds
        self._debounce = debounce_seconds
        self._lease = debounce_seconds + _IMMEDIATE_LEASE_SECONDS
        self._reconcile_after = reconcile_after_seconds
        self._city_statuses = city_statuses
        self._audience = audience  # None: every ghost counts as visible
        # At most one entry per ghost active in the last window: see _run.
        self._slots: dict[str, _Slot] = {}
        # Ghosts whose Matrix target differs from the city, since when (monotonic).
        self._mismatch_since: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0  # PUTs sent by this process
        self.debounced = 0  # updates replaced by a newer one before they were sent
        self.reconciled = 0  # ghosts corrected to the city's state
        self.hidden = 0  # transitions and refreshes not sent: nobody on Matrix sees them
        self.shown = 0  # ghosts whose mirroring started because they became visible

    @property
    def idle(self) -> bool:
        """No ghost has a send pending or a window open in this process."""
        return not self._slots

    # --- entry points ---------------------------------------------------------------
    async def on_transition(self, user_id: str, previous: str, status: str, ago: int) -> None:
        """The `presence_changed` hook: record the target, send it without blocking."""
        presence = CITY_TO_MATRIX.get(status)
        if presence is None:
            return
        ghost = self._names.ghost_for(user_id)
        if self._audience is not None:
            visible = (await self._seen([ghost])).get(ghost)
            if not visible:
                self._count_hidden("change")
                # A ghost with a row keeps its target current (most users have none);
                # one joined somewhere is looked at again later (see park).
                recheck = None if visible is None else HIDDEN_RECHECK_SECONDS
                await audience_sql.park(self._db, [ghost], recheck, presence=presence)
                return
        await storage.set_presence_target(self._db, ghost, user_id, presence, self._lease)
        self._mismatch_since.pop(ghost, None)
        self._request(ghost, presence, "change")

    def after_ghost_action(self, user_id: str) -> None:
        """`MatrixClient.on_acted_as`: Synapse may just have bumped the ghost online."""
        if self._names.city_id_of_ghost(user_id) is not None:
            self._request(user_id, None, "reassert")

    async def sweep(self) -> int:
        """Claim what is due (refreshes, failed sends), reconcile with the city, send."""
        claimed = await storage.claim_due_presence(self._db, self._refresh, 200)
        due = await self._visible_only(claimed)
        corrections = await self._differences(due)
        started: list[asyncio.Task[None]] = []
        for ghost, _, presence in due:
            corrected = corrections.get(ghost)
            if corrected is None:
                task = self._request(ghost, presence, "refresh")
            elif await storage.correct_presence_target(
                self._db, ghost, presence, corrected, self._lease
            ):
                self.reconciled += 1
                log.info("%s showed %s, the city says %s: correcting", ghost, presence, corrected)
                task = self._request(ghost, corrected, "reconcile")
            else:
                continue  # a fresh transition recorded its own target, and sends it
            if task is not None:
                started.append(task)
        # Back-pressure: a slow Synapse slows the sweep instead of piling up sends.
        if started:
            await asyncio.wait(started)
        return len(claimed)

    # --- the audience ---------------------------------------------------------------
    async def on_member_event(self, event: dict[str, Any]) -> None:
        """Inbox listener (after the roster's): mirroring starts when visibility does.

        A real user's join shows the room's ghosts; a ghost's join shows that ghost if
        a real user is there. Leaves need nothing here: the ghost's next refresh finds
        it hidden. Profile changes (a join after a join) are not joins.
        """
        if self._audience is None or event.get("type") != "m.room.member":
            return
        user_id, room_id = event.get("state_key"), event.get("room_id")
        content, unsigned = event.get("content"), event.get("unsigned")
        if not isinstance(user_id, str) or not isinstance(room_id, str):
            return
        if not isinstance(content, dict) or content.get("membership") != "join":
            return
        previous = unsigned.get("prev_content") if isinstance(unsigned, dict) else None
        if isinstance(previous, dict) and previous.get("membership") == "join":
            return
        if self._names.city_id_of_ghost(user_id) is not None:
            if await self._audience.occupied(room_id):
                await self.show([user_id])
        elif not self._names.is_ours(user_id):
            ghosts = await self._audience.ghosts_in(room_id)
            await self.show([g for g in ghosts if self._names.city_id_of_ghost(g) is not None])

    async def show(self, ghosts: list[str]) -> int:
        """Ghosts that just became visible get their state; returns how many.

        The state is the recorded target (every transition of a ghost with a row
        updates it, hidden or not), or the city's when the row says offline and the
        city does not: the user came online before the ghost existed. The city's
        `offline` does not override a recorded online state: after a Redis loss the
        city says offline for everyone, and the reconciliation gives live users a
        TTL to heartbeat first. A ghost Synapse already shows right gets no PUT
        (one nobody refreshed shows `offline` there).
        """
        rows = await audience_sql.targets(self._db, ghosts) if ghosts else []
        statuses: dict[str, str] | None = None
        users = [r.city_user_id for r in rows if r.city_user_id is not None]
        if self._city_statuses is not None and users:
            try:
                statuses = await self._city_statuses(users)
            except Exception as exc:  # Redis away: the last recorded targets will do
                log.debug("city presence not available to show ghosts: %s", exc)
        wanted: dict[str, str] = {}
        for row in rows:
            city = CITY_TO_MATRIX.get((statuses or {}).get(row.city_user_id or "", ""))
            presence = city if row.presence == "offline" and city else row.presence
            if presence == row.presence and (row.sent or presence == "offline"):
                continue  # Matrix shows it already
            wanted[row.ghost] = presence
        if wanted:
            await audience_sql.set_targets(self._db, wanted, self._lease)
        for ghost, presence in wanted.items():
            self._mismatch_since.pop(ghost, None)
            self._request(ghost, presence, "visible")
        self.shown += len(wanted)
        return len(wanted)

    async def _visible_only(
        self, due: list[tuple[str, str | None, str]]
    ) -> list[tuple[str, str | None, str]]:
        """The claimed ghosts someone can see; the others are parked, not sent."""
        if self._audience is None or not due:
            return due
        seen = await self._seen([ghost for ghost, _, _ in due])
        hidden = [ghost for ghost, _, _ in due if not seen.get(ghost)]
        if hidden:
            joined = [g for g in hidden if g in seen]
            nowhere = [g for g in hidden if g not in seen]
            if joined:
                await audience_sql.park(self._db, joined, HIDDEN_RECHECK_SECONDS)
            if nowhere:  # only joining a room can make these visible: an event tells us
                await audience_sql.park(self._db, nowhere, None)
            for _ in hidden:
                self._count_hidden("refresh")
        return [row for row in due if seen.get(row[0])]

    async def _seen(self, ghosts: list[str]) -> dict[str, bool]:
        """`Audience.visibility`; without Redis, every ghost counts as visible (the
        mirror then behaves as before issue 13 rather than hiding anyone)."""
        assert self._audience is not None
        try:
            return await self._audience.visibility(ghosts)
        except RedisError as exc:
            log.warning("who can see %d ghost(s) is unknown, mirroring them: %s", len(ghosts), exc)
            return dict.fromkeys(ghosts, True)

    def _count_hidden(self, kind: str) -> None:
        self.hidden += 1
        metrics.MATRIX_PRESENCE_HIDDEN.labels(kind).inc()

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

    # --- debounce ---------------------------------------------------------------------
    def _request(self, ghost: str, presence: str | None, reason: str) -> asyncio.Task[None] | None:
        """Send now, or at the end of the ghost's window; the task if one was started."""
        slot = self._slots.get(ghost)
        if slot is None:
            self._slots[ghost] = slot = _Slot(True, presence, reason)
            task = asyncio.create_task(self._run(ghost, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return task
        if slot.due:
            if slot.reason in _UPDATES:
                self.debounced += 1
                metrics.MATRIX_PRESENCE_DEBOUNCED.inc()
            reason = max(reason, slot.reason, key=_REASONS.index)
        # Sent at the window's end with whatever target is newest then.
        slot.due, slot.wanted, slot.reason = True, None, reason
        return None

    async def _run(self, ghost: str, slot: _Slot) -> None:
        """Send, hold the window, send again if something came meanwhile; then forget.

        One task per ghost in this process also keeps its sends in order: a slow
        "online" cannot land after the "offline" that followed it.
        """
        try:
            while slot.due:
                slot.due = False
                wanted, slot.wanted = slot.wanted, None
                if await self._deliver(ghost, wanted, slot.reason):
                    await asyncio.sleep(self._debounce)
        finally:
            if self._slots.get(ghost) is slot:
                del self._slots[ghost]

    async def _deliver(self, ghost: str, wanted: str | None, reason: str) -> bool:
        """PUT the ghost's target; True when that opens a debounce window."""
        try:
            if reason == "reassert":
                # Synapse's bump only turns unavailable into online, and only a ghost
                # whose state Synapse has (not a hidden one) is worth a PUT.
                row = await audience_sql.target(self._db, ghost)
                if row is None or not row.sent or row.presence != "unavailable":
                    return False
                presence: str | None = row.presence
            else:
                presence = wanted or await storage.presence_target(self._db, ghost)
        except Exception as exc:
            # Anything unsent stays due in matrix_ghosts: the sweep sends it.
            log.warning("reading the presence target of %s failed: %s", ghost, exc)
            return False
        if presence is None:
            return False
        try:
            await self._ghosts.ensure(ghost)
            await self._matrix.set_presence(ghost, presence)
        except Exception as exc:
            log.warning("setting %s %s failed, retrying: %s", ghost, presence, exc)
            try:
                await storage.presence_retry(self._db, ghost, presence, RETRY_SECONDS)
            except Exception as db_exc:
                log.warning("scheduling the retry of %s failed: %s", ghost, db_exc)
            return True
        self.sent += 1
        metrics.MATRIX_PRESENCE_SENT.labels(reason).inc()
        try:
            await storage.presence_delivered(self._db, ghost, presence, self._refresh)
        except Exception as exc:
            log.warning("recording the presence of %s failed: %s", ghost, exc)
        # A refresh repeats the state Matrix already shows: it does not hold back a change.
        return reason != "refresh"

    # --- reconciliation ---------------------------------------------------------------
    async def _differences(self, due: list[tuple[str, str | None, str]]) -> dict[str, str]:
        """Ghosts (among `due`) whose Matrix target differed from the city long enough."""
        if self._city_statuses is None or self._reconcile_after is None or not due:
            return {}
        users = {ghost: city_id for ghost, city_id, _ in due if city_id is not None}
        try:
            statuses = await self._city_statuses(list(users.values()))
        except Exception as exc:
            # Redis is down: nothing to compare with this round; refresh as before.
            log.debug("presence reconciliation skipped: %s", exc)
            return {}
        if statuses is None:
            return {}
        now = time.monotonic()
        corrections: dict[str, str] = {}
        for ghost, _, target in due:
            city = statuses.get(users.get(ghost, ""))
            wanted = CITY_TO_MATRIX.get(city) if city is not None else None
            if wanted is None or wanted == target:
                self._mismatch_since.pop(ghost, None)
                continue
            if now - self._mismatch_since.setdefault(ghost, now) >= self._reconcile_after:
                corrections[ghost] = wanted
                del self._mismatch_since[ghost]
        # Forget ghosts another process has been refreshing since (bounded memory).
        stale = now - self._reconcile_after - 10 * self._refresh
        for ghost in [g for g, since in self._mismatch_since.items() if since < stale]:
            del self._mismatch_since[ghost]
        return corrections
