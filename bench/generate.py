"""Shared by bench/history.py and bench/search.py: a bench database (created or
reused), the migrations applied as the gateway applies them, ULIDs made in SQL, and a
bulk load of `city_room_messages` in ordered batches with secondary indexes rebuilt
once afterwards."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"

_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford, as ULIDs use


def _b32_expr(value: str, chars: int) -> str:
    """SQL text encoding the low 5*chars bits of bigint `value` in Crockford base32."""
    parts = [
        f"substr('{_B32}', ((({value}) >> {5 * (chars - 1 - i)}) & 31)::int + 1, 1)"
        for i in range(chars)
    ]
    return " || ".join(parts)


def ulid_expr(ts: str, salt: str) -> str:
    """A 26-char ULID: 48-bit ms of `ts`, then 80 pseudo-random bits from `salt`."""
    ms = f"(extract(epoch from {ts}) * 1000)::bigint"
    r1 = f"(hashtextextended({salt}, 1) & 1099511627775)"  # 40 bits
    r2 = f"(hashtextextended({salt}, 2) & 1099511627775)"
    return f"({_b32_expr(ms, 10)} || {_b32_expr(r1, 8)} || {_b32_expr(r2, 8)})"


async def exists(admin: asyncpg.Connection, name: str) -> bool:
    return bool(await admin.fetchval("select 1 from pg_database where datname = $1", name))


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    # Same bookkeeping as gateway/infra/migrate.py (was gateway/migrate.py).
    await conn.execute(
        """create table if not exists schema_migrations (
               name text primary key,
               applied_at timestamptz not null default now())"""
    )
    done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
    applied = []
    for path in sorted(p for p in MIGRATIONS.glob("*.sql") if p.name[:4].isdigit()):
        if path.name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text(encoding="utf-8"))
            await conn.execute("insert into schema_migrations(name) values ($1)", path.name)
        applied.append(path.name)
    return applied


async def secondary_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Indexes of the two big tables that no constraint owns (safe to drop and rebuild)."""
    rows = await conn.fetch(
        """select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as ddl
           from pg_index i
           where i.indrelid in ('city_room_messages'::regclass, 'city_feed_events'::regclass)
             and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)"""
    )
    return [(r["name"], r["ddl"]) for r in rows]


def add_admin_dsn(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--admin-dsn",
        default=os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )


async def fresh_or_reused(
    admin: asyncpg.Connection, dsn: str, db: str, rows: int, reuse: bool, *, say_why: bool = False
) -> bool:
    """True when `db` exists holding `rows` messages and `reuse` allows it; otherwise
    `db` is (re)created empty and False returned."""
    there = await exists(admin, db)
    reused = False
    if there and reuse:
        conn = await asyncpg.connect(dsn)
        have = await conn.fetchval("select count(*) from city_room_messages")
        reused = have == rows
        if not reused and say_why:
            print(f"{db} holds {have:,} messages, not {rows:,}: regenerating")
        await conn.close()
    if not reused:
        if there:
            await admin.execute(f'drop database "{db}" with (force)')
        await admin.execute(f'create database "{db}"')
    return reused


async def bulk_load(
    conn: asyncpg.Connection,
    t0: float,
    *,
    rooms_sql: str,
    rooms: int,
    batch_sql: str,
    batch_args: tuple[object, ...],
    rows: int,
    batch: int,
    unit: str,
) -> None:
    """Rooms, then messages 1..`rows` in batches of `batch` (`batch_sql` with the
    batch's first and last ordinal, then `batch_args`)."""
    await conn.execute("set synchronous_commit = off")
    await conn.execute("set maintenance_work_mem = '1GB'")
    await conn.execute(rooms_sql, rooms)
    # Bulk load: without the per-row seq trigger (0004: it takes an advisory lock and a
    # fresh nextval per row; inserts here are one ordered stream, so identity order is
    # the same) and with secondary indexes rebuilt once afterwards.
    indexes = await secondary_indexes(conn)
    await conn.execute(
        "alter table city_room_messages disable trigger city_room_messages_ordered_seq"
    )
    for name, _ in indexes:
        await conn.execute(f"drop index {name}")
    done = 0
    while done < rows:
        hi = min(rows, done + batch)
        await conn.execute(batch_sql, done + 1, hi, *batch_args)
        done = hi
        el = time.perf_counter() - t0
        print(f"  generated {done:,}/{rows:,}{unit} ({el:.0f} s)", flush=True)
    for name, ddl in indexes:
        t1 = time.perf_counter()
        await conn.execute(ddl)
        print(f"  index {name} rebuilt in {time.perf_counter() - t1:.1f} s", flush=True)
    await conn.execute(
        "alter table city_room_messages enable trigger city_room_messages_ordered_seq"
    )


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]
