"""SQL for city rooms."""

from __future__ import annotations

import asyncpg

from gateway.core.models import Room
from gateway.core.storage import Executor, Row

# last_event: newest message time (one index probe per room), else creation time.
_SELECT = """
select r.id, r.slug, r.name, r.description, r.is_default, r.created_at, r.created_by,
       r.matrix_room_id, r.matrix_alias,
       coalesce((select m.created_at from city_room_messages m
                 where m.room_id = r.id order by m.seq desc limit 1),
                r.created_at) as last_event
from city_rooms r
"""


def _room(row: Row) -> Room:
    return Room(**dict(row))


async def list_rooms(db: Executor, limit: int, offset: int) -> list[Room]:
    rows = await db.fetch(
        _SELECT + " order by r.is_default desc, r.created_at, r.id limit $1 offset $2",
        limit,
        offset,
    )
    return [_room(r) for r in rows]


async def get_room(db: Executor, room_id: str) -> Room | None:
    row = await db.fetchrow(_SELECT + " where r.id = $1", room_id)
    return _room(row) if row else None


async def get_room_by_matrix_id(db: Executor, matrix_room_id: str) -> Room | None:
    row = await db.fetchrow(_SELECT + " where r.matrix_room_id = $1", matrix_room_id)
    return _room(row) if row else None


async def insert_room(
    db: Executor,
    *,
    room_id: str,
    slug: str,
    name: str,
    description: str | None,
    is_default: bool,
    created_by: str | None,
) -> Room | None:
    """Insert a room; None if the id or slug is taken."""
    try:
        row = await db.fetchrow(
            """insert into city_rooms (id, slug, name, description, is_default, created_by)
               values ($1, $2, $3, $4, $5, $6)
               on conflict do nothing
               returning id, slug, name, description, is_default, created_at, created_by,
                         matrix_room_id, matrix_alias, created_at as last_event""",
            room_id,
            slug,
            name,
            description,
            is_default,
            created_by,
        )
    except asyncpg.UniqueViolationError:
        return None
    return _room(row) if row else None


async def set_matrix_mapping(db: Executor, room_id: str, matrix_room_id: str, alias: str) -> None:
    await db.execute(
        "update city_rooms set matrix_room_id = $2, matrix_alias = $3 where id = $1",
        room_id,
        matrix_room_id,
        alias,
    )


async def count_rooms(db: Executor) -> int:
    return int(await db.fetchval("select count(*) from city_rooms"))
