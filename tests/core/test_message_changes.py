"""MessageService: edits, deletes and Matrix event ids go through the core, announced
after commit; an outbox port adds its row in the insert statement, all or nothing.

Real PostgreSQL. The outbox here is a small adapter of the test's own (a table it
creates), which is what the port promises any adapter: its statement runs with the
message insert.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.messages import Author, MessageService
from gateway.core.models import Message
from gateway.infra import db as database_pool

ROOM = "room_city_changes"


class TableOutbox:
    """A MessageOutbox queueing into `test_outbox_queue`."""

    def queue_statement(self, stored: str, author_name: str) -> str:
        return (
            "insert into test_outbox_queue (message_id, author_name)"
            f" select id, {author_name} from {stored}"
        )


class Heard:
    def __init__(self, hooks: CityHooks) -> None:
        self.posted: list[Message] = []
        self.edited: list[Message] = []
        self.deleted: list[Message] = []
        hooks.message_posted.append(self._posted)
        hooks.message_edited.append(self._edited)
        hooks.message_deleted.append(self._deleted)

    async def _posted(self, m: Message) -> None:
        self.posted.append(m)

    async def _edited(self, m: Message) -> None:
        self.edited.append(m)

    async def _deleted(self, m: Message) -> None:
        self.deleted.append(m)


@pytest.fixture
async def pool(db: asyncpg.Connection, database: str) -> AsyncIterator[asyncpg.Pool]:
    await db.execute(
        "create table if not exists test_outbox_queue (message_id text, author_name text)"
    )
    await db.execute("insert into city_rooms (id, slug, name) values ($1, 'changes', 'C')", ROOM)
    p = await database_pool.create_pool(database, 4)
    yield p
    await p.close()
    await db.execute("drop table if exists test_outbox_queue")


async def _feed(db: asyncpg.Connection, message_id: str) -> list[str]:
    rows = await db.fetch(
        "select payload from city_feed_events where payload->>'message_id' = $1", message_id
    )
    return [json.loads(r["payload"])["body"] for r in rows]


async def test_edit_and_delete_follow_the_feed_and_are_announced(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    hooks = CityHooks()
    heard = Heard(hooks)
    service = MessageService(pool, hooks, max_chars=100)
    posted = (await service.post(ROOM, Author(matrix_id="@a:s"), "one", source="matrix")).message

    edited = await service.edit(posted.id, "one, edited")
    assert edited is not None and edited.body == "one, edited" and edited.id == posted.id
    assert heard.edited == [edited]
    assert await _feed(db, posted.id) == ["one, edited"]
    with pytest.raises(AppError):
        await service.edit(posted.id, "x" * 101)  # the same rules as a post
    assert await service.edit("m_city_missing", "nothing") is None

    deleted = await service.delete(posted.id)
    assert deleted is not None and deleted.id == posted.id and deleted.room_id == ROOM
    assert heard.deleted == [deleted]
    assert await _feed(db, posted.id) == []
    assert await service.delete(posted.id) is None
    assert len(heard.deleted) == 1


async def test_inside_a_callers_transaction_nothing_is_announced(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    hooks = CityHooks()
    heard = Heard(hooks)
    service = MessageService(pool, hooks, max_chars=100)
    posted = (await service.post(ROOM, Author(user_id="u_1"), "two")).message
    async with pool.acquire() as conn, conn.transaction():
        assert await service.edit(posted.id, "two, edited", db=conn) is not None
        assert await service.delete(posted.id, db=conn) is not None
    assert heard.edited == [] and heard.deleted == []  # the caller announces after commit


async def test_matrix_event_ids_are_recorded_by_the_core(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    service = MessageService(pool, CityHooks(), max_chars=100)
    first = (await service.post(ROOM, Author(user_id="u_1"), "first")).message
    second = (await service.post(ROOM, Author(user_id="u_1"), "second")).message

    # An echo arriving first records the id; a second echo does not replace it.
    assert await service.record_matrix_event_id(first.id, "$e1", only_if_missing=True)
    assert not await service.record_matrix_event_id(first.id, "$e2", only_if_missing=True)
    # An id already on another message is not taken by an echo.
    assert not await service.record_matrix_event_id(second.id, "$e1", only_if_missing=True)
    found = await service.find_by_matrix_event("$e1")
    assert found is not None and found.id == first.id
    # The outbox's answer is the truth.
    assert await service.record_matrix_event_id(second.id, "$e3")
    found = await service.find_by_matrix_event("$e3")
    assert found is not None and found.id == second.id


async def test_the_outbox_row_is_written_with_the_message_or_not_at_all(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    service = MessageService(pool, CityHooks(), max_chars=100, outbox=TableOutbox())
    city = await service.post(
        ROOM, Author(user_id="u_1", display_name="Una"), "queued", client_msg_id="c1"
    )
    retry = await service.post(
        ROOM, Author(user_id="u_1", display_name="Una"), "queued", client_msg_id="c1"
    )
    assert retry.created is False and retry.message.id == city.message.id
    # From Matrix: already there, never queued back.
    await service.post(ROOM, Author(matrix_id="@m:s"), "from matrix", source="matrix")
    with pytest.raises(AppError):
        await service.post("room_city_nowhere", Author(user_id="u_1"), "no room")
    queued = await db.fetch("select message_id, author_name from test_outbox_queue")
    assert [tuple(r) for r in queued] == [(city.message.id, "Una")]

    # Without the port nothing is queued and the insert has no queue in it.
    plain = MessageService(pool, CityHooks(), max_chars=100)
    await plain.post(ROOM, Author(user_id="u_2"), "not queued")
    assert await db.fetchval("select count(*) from test_outbox_queue") == 1
