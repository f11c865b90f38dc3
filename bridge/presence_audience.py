"""Who on Matrix can see a ghost: the presence mirror's audience (issue 13).

Synapse delivers a user's presence only to users who share a room with them
(`PresenceHandler` → `get_interested_parties`, synapse/handlers/presence.py), so a
presence PUT for a ghost nobody shares a room with is work for no one. Like the
mautrix bridges, which set a puppet's presence only for portals a Matrix user is
in, the mirror sends a ghost's presence only while the ghost is **visible**:

    visible(ghost) = the ghost is joined to a Matrix room (matrix_memberships)
                     in which at least one real Matrix user is joined (the roster,
                     bridge/members.py: `{matrix}:members:<room>`, real users only).

The bridge joins a ghost to a bridged room when its city user first posts there
(the outbox), or when something calls `Bridge.join`; a city user who is merely
connected to a city room does not make its ghost a member, so Element would not
show that ghost's presence anyway. The rule does not care what kind of room it is:
a DM with a ghost (which the bridge does not accept today) would count the same.
Our bot, Second Me and other ghosts are not an audience.

A room whose members cannot be loaded counts as occupied (a few PUTs too many
rather than a ghost wrongly hidden), see `MatrixRoster.occupied`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.storage import Executor

# A hidden ghost that is joined somewhere and online is looked at again this often:
# a join the membership events did not tell us about (a lost event, a race between
# a join and a refresh) is noticed within this time at worst.
HIDDEN_RECHECK_SECONDS = 300.0


class RoomOccupancy(Protocol):
    async def occupied(self, matrix_room_ids: Collection[str]) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class GhostTarget:
    ghost: str
    city_user_id: str | None
    presence: str  # what Matrix should show
    sent: bool  # Synapse has it (false while a send is pending, or while hidden)


class Audience:
    def __init__(self, db: Executor, rooms: RoomOccupancy) -> None:
        self._db = db
        self._rooms = rooms

    async def visibility(self, ghosts: Sequence[str]) -> dict[str, bool]:
        """For each ghost joined to some Matrix room: can a real Matrix user see it?

        Ghosts joined nowhere are left out (no row needed for them: most city users).
        """
        if not ghosts:
            return {}
        rows = await self._db.fetch(
            """select matrix_user_id, matrix_room_id from matrix_memberships
               where matrix_user_id = any($1::text[])""",
            list(ghosts),
        )
        rooms_of: dict[str, list[str]] = {}
        for row in rows:
            rooms_of.setdefault(row["matrix_user_id"], []).append(row["matrix_room_id"])
        if not rooms_of:
            return {}
        occupied = await self._rooms.occupied({r for rs in rooms_of.values() for r in rs})
        return {g: any(r in occupied for r in rs) for g, rs in rooms_of.items()}

    async def occupied(self, matrix_room_id: str) -> bool:
        return matrix_room_id in await self._rooms.occupied([matrix_room_id])

    async def ghosts_in(self, matrix_room_id: str) -> list[str]:
        """Our users the bridge joined to a Matrix room (ghosts, and the bot/Second Me)."""
        rows = await self._db.fetch(
            "select matrix_user_id from matrix_memberships where matrix_room_id = $1",
            matrix_room_id,
        )
        return [r["matrix_user_id"] for r in rows]


# --- matrix_ghosts, for the mirror ----------------------------------------------------
async def targets(db: Executor, ghosts: Sequence[str]) -> list[GhostTarget]:
    rows = await db.fetch(
        """select matrix_user_id, city_user_id, presence, presence_sent from matrix_ghosts
           where matrix_user_id = any($1::text[])""",
        list(ghosts),
    )
    return [
        GhostTarget(r["matrix_user_id"], r["city_user_id"], r["presence"], r["presence_sent"])
        for r in rows
    ]


async def target(db: Executor, ghost: str) -> GhostTarget | None:
    found = await targets(db, [ghost])
    return found[0] if found else None


async def set_targets(db: Executor, wanted: dict[str, str], lease_seconds: float) -> None:
    """Record what Matrix should show (existing rows), owned by the caller for a lease."""
    await db.execute(
        """update matrix_ghosts g
           set presence = w.presence, presence_sent = false,
               presence_due_at = now() + make_interval(secs => $3)
           from unnest($1::text[], $2::text[]) as w(ghost, presence)
           where g.matrix_user_id = w.ghost""",
        list(wanted),
        list(wanted.values()),
        lease_seconds,
    )


async def park(
    db: Executor, ghosts: Sequence[str], recheck_seconds: float | None, presence: str | None = None
) -> None:
    """Stop mirroring hidden ghosts: nothing is sent and they are not refreshed.

    Synapse drops a ghost that is not refreshed to `offline` after its
    `sync_online_timeout`, which nobody sees; `presence_sent = false` says Synapse no
    longer has the target, so it is sent when the ghost becomes visible again. An
    online/unavailable ghost joined somewhere is looked at again after
    `recheck_seconds` (None: only a membership event brings it back). With
    `presence`, the target is updated too (a transition of a hidden ghost).
    """
    await db.execute(
        """update matrix_ghosts
           set presence = coalesce($3, presence), presence_sent = false,
               presence_due_at = case
                   when coalesce($3, presence) = 'offline' or $2::float8 is null then null
                   else now() + make_interval(secs => $2::float8) end
           where matrix_user_id = any($1::text[])""",
        list(ghosts),
        recheck_seconds,
        presence,
    )
