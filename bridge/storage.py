"""SQL only, for the bridge's tables (migrations/0002_bridge.sql) and the outbox.

The bridge owns the matrix_* tables. It reads city tables where a join is the point
(the outbox head is ordered by the message's room seq) but never writes them: city
messages and rooms change through gateway.core's services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.outbox_queue import change_queue_statement
from gateway.core.models import Message
from gateway.core.ports import OutboxChange
from gateway.core.storage import Executor


# --- outbox ------------------------------------------------------------------------
class OutboxQueue:
    """The bridge's part of the city's transactional outbox (gateway.core.ports.MessageOutbox).

    Its statement runs inside the core's message insert (one statement, one round
    trip), so a city message and its outbox row commit together or not at all.
    """

    def queue_statement(self, stored: str, author_name: str) -> str:
        # `seq`: the message's own, so the room's rows go in message order.
        return (
            "insert into matrix_outbox (room_id, message_id, author_name, seq)"
            f" select room_id, id, {author_name}, seq from {stored}"
        )

    def queue_change_statement(self, change: OutboxChange, stored: str) -> str:
        return change_queue_statement(change, stored)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    room_id: str
    message_id: str
    kind: str
    author_name: str | None
    attempts: int
    uncertain: bool
    due: bool
    message: Message | None  # None when the message was deleted meanwhile
    # Changes (kind other than 'message'; migrations/0007, bridge/outbox_ops.py).
    op_key: str = ""
    actor_user_id: str | None = None
    reaction_id: int | None = None
    target_event_id: str | None = None
    payload: dict[str, Any] | None = None


# A room's outbox rows go in the order of their room sequence (the order of the city
# history), not of the outbox's own ids: concurrent posts can take their outbox ids
# in the other order. A message row has its message's seq; a change (edit, redact,
# reaction) a later value of the same sequence (migrations/0007). A row whose message
# is gone is dropped without a send when it is reached.
_HEAD_ORDER = "o.seq, o.id"


async def due_rooms(db: Executor, limit: int) -> list[str]:
    """Rooms whose head outbox row may be sent now, longest-waiting first."""
    rows = await db.fetch(
        f"""select room_id from (
               select distinct on (o.room_id) o.room_id, o.next_attempt_at
               from matrix_outbox o
               order by o.room_id, {_HEAD_ORDER}
           ) heads
           where next_attempt_at <= now()
           order by next_attempt_at limit $1""",
        limit,
    )
    return [r["room_id"] for r in rows]


ROOM_SEQ_LOCK = "city_room_seq:"  # migrations/0004_room_order.sql


async def wait_for_room_inserts(db: Executor, room_id: str) -> None:
    """Return once every message of the room that already has a seq is committed.

    Inserts hold this lock shared from before their seq is drawn until they commit
    (the trigger of migrations/0004); taking it exclusively, outside any transaction,
    waits for them and releases it at once. Run it before reading the room's head.
    """
    await db.execute(
        "select pg_advisory_xact_lock(hashtextextended($1 || $2::text, 0))",
        ROOM_SEQ_LOCK,
        room_id,
    )


_MESSAGE_COLUMNS = (
    "id", "room_id", "author_user_id", "author_agent_id", "author_matrix_id", "body",
    "created_at", "seq", "matrix_event_id", "reply_to",
)  # fmt: skip


async def lock_head(db: Executor, room_id: str) -> OutboxRow | None:
    """Lock the room's head row (with its message), or None if another process holds it.

    The head is the row of the room's lowest message seq. Only the head is ever a
    candidate: SKIP LOCKED on "the first unlocked row of the room" would let a second
    process send message 2 while message 1 is in flight.
    """
    row = await db.fetchrow(
        f"""select o.id as o_id, o.message_id, o.kind, o.author_name, o.attempts,
                   o.uncertain, o.next_attempt_at <= now() as due, o.room_id as o_room_id,
                   o.op_key, o.actor_user_id, o.reaction_id, o.target_event_id, o.payload,
                   {", ".join("m." + c for c in _MESSAGE_COLUMNS)}
            from matrix_outbox o
            left join city_room_messages m on m.id = o.message_id
            where o.id = (
                select o.id from matrix_outbox o
                where o.room_id = $1
                order by {_HEAD_ORDER} limit 1)
            for update of o skip locked""",
        room_id,
    )
    if row is None:
        return None
    message = Message(**{c: row[c] for c in _MESSAGE_COLUMNS}) if row["id"] else None
    return OutboxRow(
        id=row["o_id"],
        room_id=row["o_room_id"],
        message_id=row["message_id"],
        kind=row["kind"],
        author_name=row["author_name"],
        attempts=row["attempts"],
        uncertain=row["uncertain"],
        due=row["due"],
        message=message,
        op_key=row["op_key"],
        actor_user_id=row["actor_user_id"],
        reaction_id=row["reaction_id"],
        target_event_id=row["target_event_id"],
        payload=row["payload"],
    )


async def finish_outbox_row(db: Executor, outbox_id: int) -> None:
    """The row was delivered (or needs no send); the caller records the event id."""
    await db.execute("delete from matrix_outbox where id = $1", outbox_id)


async def forget_outbox_message(db: Executor, message_id: str) -> None:
    """The message was removed: nothing of it is to be sent any more."""
    await db.execute("delete from matrix_outbox where message_id = $1", message_id)


async def retry_outbox_row(
    db: Executor, outbox_id: int, delay_seconds: float, error: str, uncertain: bool
) -> None:
    await db.execute(
        """update matrix_outbox
           set attempts = attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2),
               last_error = $3,
               uncertain = uncertain or $4
           where id = $1""",
        outbox_id,
        delay_seconds,
        error[:1000],
        uncertain,
    )


async def unmapped_rooms(db: Executor) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch(
        "select id, name, description from city_rooms where matrix_room_id is null order by id"
    )
    return [(r["id"], r["name"], r["description"]) for r in rows]


# --- inbox -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InboxEvent:
    event_id: str
    room_id: str | None
    sender: str | None
    type: str | None
    event: dict[str, Any]


async def store_events(db: Executor, events: list[InboxEvent]) -> None:
    """Insert what is new; events already stored (a re-sent transaction) are skipped."""
    if not events:
        return
    await db.execute(
        """insert into matrix_inbox (event_id, room_id, sender, type, event)
           select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
           on conflict (event_id) do nothing""",
        [e.event_id for e in events],
        [e.room_id for e in events],
        [e.sender for e in events],
        [e.type for e in events],
        [e.event for e in events],
    )


async def claim_pending(db: Executor, event_id: str) -> dict[str, Any] | None:
    """Lock a pending event for processing (None if done or being processed)."""
    row = await db.fetchrow(
        """select event from matrix_inbox
           where event_id = $1 and state = 'pending' for update skip locked""",
        event_id,
    )
    return dict(row["event"]) if row else None


async def finish_event(db: Executor, event_id: str, state: str, detail: str | None) -> None:
    await db.execute(
        """update matrix_inbox set state = $2, detail = $3, processed_at = now(),
                  attempts = attempts + 1
           where event_id = $1""",
        event_id,
        state,
        detail[:1000] if detail else None,
    )


async def record_failure(db: Executor, event_id: str, error: str, max_attempts: int) -> None:
    await db.execute(
        """update matrix_inbox
           set attempts = attempts + 1, detail = $2,
               state = case when attempts + 1 >= $3 then 'failed' else 'pending' end,
               processed_at = case when attempts + 1 >= $3 then now() else null end
           where event_id = $1 and state = 'pending'""",
        event_id,
        error[:1000],
        max_attempts,
    )


async def stale_pending(db: Executor, older_than_seconds: float, limit: int) -> list[str]:
    rows = await db.fetch(
        """select event_id from matrix_inbox
           where state = 'pending' and received_at < now() - make_interval(secs => $1)
           order by received_at limit $2""",
        older_than_seconds,
        limit,
    )
    return [r["event_id"] for r in rows]


# --- ghosts ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ghost:
    matrix_user_id: str
    registered: bool
    display_name: str | None


async def get_ghost(db: Executor, matrix_user_id: str) -> Ghost | None:
    row = await db.fetchrow(
        """select matrix_user_id, registered_at is not null as registered, display_name
           from matrix_ghosts where matrix_user_id = $1""",
        matrix_user_id,
    )
    return Ghost(**dict(row)) if row else None


async def mark_registered(db: Executor, matrix_user_id: str, city_user_id: str | None) -> None:
    await db.execute(
        """insert into matrix_ghosts (matrix_user_id, city_user_id, registered_at)
           values ($1, $2, now())
           on conflict (matrix_user_id) do update
           set registered_at = coalesce(matrix_ghosts.registered_at, now())""",
        matrix_user_id,
        city_user_id,
    )


async def set_display_name(db: Executor, matrix_user_id: str, name: str) -> None:
    await db.execute(
        "update matrix_ghosts set display_name = $2 where matrix_user_id = $1",
        matrix_user_id,
        name,
    )


async def set_presence_target(
    db: Executor,
    matrix_user_id: str,
    city_user_id: str | None,
    presence: str,
    due_in_seconds: float,
) -> None:
    """Record the presence Matrix should show; a sweep sends it if still unsent then."""
    await db.execute(
        """insert into matrix_ghosts
               (matrix_user_id, city_user_id, presence, presence_sent, presence_due_at)
           values ($1, $2, $3, false, now() + make_interval(secs => $4))
           on conflict (matrix_user_id) do update
           set presence = $3, presence_sent = false,
               presence_due_at = now() + make_interval(secs => $4)""",
        matrix_user_id,
        city_user_id,
        presence,
        due_in_seconds,
    )


async def presence_delivered(
    db: Executor, matrix_user_id: str, presence: str, refresh_seconds: float
) -> None:
    """Synapse has `presence`; online/unavailable are due again for a refresh."""
    await db.execute(
        """update matrix_ghosts
           set presence_sent = true,
               presence_due_at = case when presence = 'offline' then null
                                      else now() + make_interval(secs => $3) end
           where matrix_user_id = $1 and presence = $2""",
        matrix_user_id,
        presence,
        refresh_seconds,
    )


async def presence_retry(
    db: Executor, matrix_user_id: str, presence: str, delay_seconds: float
) -> None:
    await db.execute(
        """update matrix_ghosts set presence_due_at = now() + make_interval(secs => $3)
           where matrix_user_id = $1 and presence = $2""",
        matrix_user_id,
        presence,
        delay_seconds,
    )


async def presence_target(db: Executor, matrix_user_id: str) -> str | None:
    """The presence Matrix should show for a ghost (None: never set)."""
    value = await db.fetchval(
        "select presence from matrix_ghosts where matrix_user_id = $1", matrix_user_id
    )
    return None if value is None else str(value)


async def correct_presence_target(
    db: Executor, matrix_user_id: str, expected: str, presence: str, due_in_seconds: float
) -> bool:
    """Replace a delivered target `expected` by `presence` (reconciliation).

    False when the row changed meanwhile (a fresh transition recorded its own target,
    which is newer than the state the reconciliation read).
    """
    status: str = await db.execute(
        """update matrix_ghosts
           set presence = $3, presence_sent = false,
               presence_due_at = now() + make_interval(secs => $4)
           where matrix_user_id = $1 and presence = $2 and presence_sent""",
        matrix_user_id,
        expected,
        presence,
        due_in_seconds,
    )
    return status.endswith(" 1")


async def claim_due_presence(
    db: Executor, lease_seconds: float, limit: int
) -> list[tuple[str, str | None, str]]:
    """Ghosts whose presence must be (re)sent now, claimed for `lease_seconds`.

    Moving the due time forward is the claim: another process's sweep no longer sees
    the row, so each refresh is sent by one process.
    """
    rows = await db.fetch(
        """update matrix_ghosts g
           set presence_due_at = now() + make_interval(secs => $1)
           where g.matrix_user_id in (
               select matrix_user_id from matrix_ghosts
               where presence_due_at <= now()
               order by presence_due_at limit $2
               for update skip locked)
           returning g.matrix_user_id, g.city_user_id, g.presence""",
        lease_seconds,
        limit,
    )
    return [(r["matrix_user_id"], r["city_user_id"], r["presence"]) for r in rows]


async def is_member(db: Executor, matrix_user_id: str, matrix_room_id: str) -> bool:
    found = await db.fetchval(
        "select 1 from matrix_memberships where matrix_user_id = $1 and matrix_room_id = $2",
        matrix_user_id,
        matrix_room_id,
    )
    return found is not None


async def set_member(db: Executor, matrix_user_id: str, matrix_room_id: str, joined: bool) -> None:
    if joined:
        await db.execute(
            """insert into matrix_memberships (matrix_user_id, matrix_room_id) values ($1, $2)
               on conflict do nothing""",
            matrix_user_id,
            matrix_room_id,
        )
    else:
        await db.execute(
            "delete from matrix_memberships where matrix_user_id = $1 and matrix_room_id = $2",
            matrix_user_id,
            matrix_room_id,
        )
