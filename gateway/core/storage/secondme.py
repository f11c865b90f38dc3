"""SQL for Second Me: sessions, history, and reply claims for rooms."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.core.ids import new_prefixed_id
from gateway.core.storage import Executor, Row


@dataclass(frozen=True, slots=True)
class SecondMeSession:
    id: str
    user_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SecondMeMessage:
    id: str
    session_id: str
    user_id: str
    role: str  # 'user' | 'assistant'
    content: str
    created_at: datetime
    seq: int

    def as_json(self) -> dict[str, object]:
        return {"role": self.role, "content": self.content, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class ReplyClaim:
    trigger_id: str
    kind: str
    room_id: str
    requester_id: str
    prompt: str
    prompt_message_id: str | None
    state: str
    attempts: int


_MESSAGE_COLUMNS = "id, session_id, user_id, role, content, created_at, seq"
_CLAIM_COLUMNS = (
    "trigger_id, kind, room_id, requester_id, prompt, prompt_message_id, state, attempts"
)

# The user's latest session is their active one.
_LATEST_SESSION = (
    "select id from secondme_sessions where user_id = $1 order by created_at desc, id desc limit 1"
)


def _session(row: Row) -> SecondMeSession:
    return SecondMeSession(**dict(row))


def _message(row: Row) -> SecondMeMessage:
    return SecondMeMessage(**dict(row))


def _claim(row: Row) -> ReplyClaim:
    return ReplyClaim(**dict(row))


# --- sessions and history ------------------------------------------------------------


async def get_or_create_session(conn: asyncpg.Connection, user_id: str) -> SecondMeSession:
    """The user's latest session, created if they have none.

    Must run inside a transaction: the advisory lock (held until it ends) makes two
    concurrent first messages of one user share one session instead of making two.
    """
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('secondme_session:' || $1, 0))", user_id
    )
    row = await conn.fetchrow(
        "select id, user_id, created_at from secondme_sessions"
        " where user_id = $1 order by created_at desc, id desc limit 1",
        user_id,
    )
    if row is None:
        row = await conn.fetchrow(
            "insert into secondme_sessions (id, user_id) values ($1, $2)"
            " returning id, user_id, created_at",
            new_prefixed_id("smsess_"),
            user_id,
        )
    return _session(row)


async def insert_message(
    db: Executor, session_id: str, user_id: str, role: str, content: str
) -> SecondMeMessage:
    row = await db.fetchrow(
        "insert into secondme_messages (id, session_id, user_id, role, content)"
        f" values ($1, $2, $3, $4, $5) returning {_MESSAGE_COLUMNS}",
        new_prefixed_id("smmsg_"),
        session_id,
        user_id,
        role,
        content,
    )
    return _message(row)


async def last_messages(
    db: Executor, user_id: str, limit: int, before_seq: int | None = None
) -> list[SecondMeMessage]:
    """The newest `limit` messages of the user's active session, oldest first.

    `before_seq` keeps only messages older than that one (the context of a prompt).
    Filtering on user_id as well as on the session is belt and braces: a user's
    history can only ever contain their own rows.
    """
    if limit <= 0:
        return []
    rows = await db.fetch(
        f"""select * from (
                select {_MESSAGE_COLUMNS} from secondme_messages
                where session_id = ({_LATEST_SESSION}) and user_id = $1
                  and seq < coalesce($3::bigint, 9223372036854775807)
                order by seq desc limit $2
            ) page order by seq""",
        user_id,
        limit,
        before_seq,
    )
    return [_message(r) for r in rows]


async def get_message(db: Executor, message_id: str) -> SecondMeMessage | None:
    row = await db.fetchrow(
        f"select {_MESSAGE_COLUMNS} from secondme_messages where id = $1", message_id
    )
    return _message(row) if row else None


async def messages_before(
    db: Executor, message: SecondMeMessage, limit: int
) -> list[SecondMeMessage]:
    """Up to `limit` messages of `message`'s session before it, oldest first."""
    if limit <= 0:
        return []
    rows = await db.fetch(
        f"""select * from (
                select {_MESSAGE_COLUMNS} from secondme_messages
                where session_id = $1 and user_id = $2 and seq < $3
                order by seq desc limit $4
            ) page order by seq""",
        message.session_id,
        message.user_id,
        message.seq,
        limit,
    )
    return [_message(r) for r in rows]


# --- reply claims (rooms and DMs) ----------------------------------------------------


async def claim_reply(
    db: Executor,
    *,
    trigger_id: str,
    kind: str,
    room_id: str,
    requester_id: str,
    prompt: str,
    lease_seconds: float,
) -> ReplyClaim | None:
    """Insert the claim; None when someone (another process, an earlier try) has it."""
    row = await db.fetchrow(
        "insert into secondme_replies"
        " (trigger_id, kind, room_id, requester_id, prompt, lease_until)"
        " values ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))"
        f" on conflict (trigger_id) do nothing returning {_CLAIM_COLUMNS}",
        trigger_id,
        kind,
        room_id,
        requester_id,
        prompt,
        lease_seconds,
    )
    return _claim(row) if row else None


async def get_claim(db: Executor, trigger_id: str) -> ReplyClaim | None:
    row = await db.fetchrow(
        f"select {_CLAIM_COLUMNS} from secondme_replies where trigger_id = $1", trigger_id
    )
    return _claim(row) if row else None


async def get_claim_for_update(conn: asyncpg.Connection, trigger_id: str) -> ReplyClaim | None:
    row = await conn.fetchrow(
        f"select {_CLAIM_COLUMNS} from secondme_replies where trigger_id = $1 for update",
        trigger_id,
    )
    return _claim(row) if row else None


async def set_prompt_message(db: Executor, trigger_id: str, message_id: str) -> None:
    await db.execute(
        "update secondme_replies set prompt_message_id = $2 where trigger_id = $1",
        trigger_id,
        message_id,
    )


async def finish_claim(db: Executor, trigger_id: str, state: str, reply_ref: str | None) -> bool:
    """Close a pending claim; False when it is no longer pending (someone else closed it)."""
    status = await db.execute(
        "update secondme_replies set state = $2, reply_ref = $3, finished_at = now()"
        " where trigger_id = $1 and state = 'pending'",
        trigger_id,
        state,
        reply_ref,
    )
    return bool(status == "UPDATE 1")


async def reclaim_expired(
    db: Executor, lease_seconds: float, max_attempts: int, limit: int
) -> list[ReplyClaim]:
    """Take over pending claims whose holder's lease ran out (it died or hung).

    The conditional UPDATE is the claim: of several processes sweeping at once, each
    row goes to exactly one. SKIP LOCKED keeps sweepers from queueing on each other.
    """
    rows = await db.fetch(
        f"""update secondme_replies r
               set lease_until = now() + make_interval(secs => $1), attempts = r.attempts + 1
             where r.trigger_id in (
                 select trigger_id from secondme_replies
                 where state = 'pending' and lease_until < now() and attempts < $2
                 order by lease_until limit $3
                 for update skip locked)
             returning {", ".join("r." + c.strip() for c in _CLAIM_COLUMNS.split(","))}""",
        lease_seconds,
        max_attempts,
        limit,
    )
    return [_claim(r) for r in rows]


async def abandon_exhausted(db: Executor, max_attempts: int) -> int:
    """Give up on claims that kept failing to finish (their holders kept dying)."""
    status = await db.execute(
        "update secondme_replies set state = 'failed', finished_at = now()"
        " where state = 'pending' and lease_until < now() and attempts >= $1",
        max_attempts,
    )
    return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class MissedMention:
    id: str
    room_id: str
    author_user_id: str
    body: str


async def unclaimed_city_mentions(
    db: Executor, needle: str, older_than_seconds: float, newer_than_seconds: float, limit: int
) -> list[MissedMention]:
    """Recent city-user messages containing `needle` that no claim covers.

    A process that dies between committing a message and running its after-commit
    hook never claims the mention; this finds such messages. The caller applies the
    exact mention rule; ILIKE is only a cheap pre-filter on the created_at index.
    """
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await db.fetch(
        """select m.id, m.room_id, m.author_user_id, m.body from city_room_messages m
           where m.created_at > now() - make_interval(secs => $2)
             and m.created_at < now() - make_interval(secs => $3)
             and m.author_user_id is not null and m.author_agent_id is null
             and m.body ilike $1
             and not exists (
                 select 1 from secondme_replies r where r.trigger_id = 'city:' || m.id)
           order by m.created_at limit $4""",
        f"%{escaped}%",
        newer_than_seconds,
        older_than_seconds,
        limit,
    )
    return [MissedMention(**dict(r)) for r in rows]
