"""Apply `migrations/NNNN_name.sql` in order, each once, each in a transaction.

Safe to run from several processes at once: a session advisory lock serialises
them, and whoever comes second finds nothing left to do.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Arbitrary constant naming "city-gateway migrations" among advisory locks.
_LOCK_KEY = 0x43_49_54_59  # "CITY"


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    files = migration_files(directory)
    if not files:
        raise RuntimeError(f"no migrations found in {directory}")
    applied_now: list[str] = []
    await conn.execute("select pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """create table if not exists schema_migrations (
                   name text primary key,
                   applied_at timestamptz not null default now())"""
        )
        done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
        for path in files:
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("insert into schema_migrations(name) values ($1)", path.name)
            log.info("applied migration %s", path.name)
            applied_now.append(path.name)
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
