"""Migrations, configuration errors and the command line, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import asyncpg
import jwt
import pytest

from gateway.infra.db import ensure_database
from gateway.infra.migrate import migrate, migration_files
from gateway.infra.settings import ConfigError, load_settings
from tests.conftest import JWT_SECRET, PG_BASE, make_settings
from tests.servers import REPO, settings_env


@pytest.fixture
async def scratch_db() -> str:
    name = f"city_scratch_{secrets.token_hex(4)}"
    url = f"{PG_BASE}/{name}"
    yield url  # type: ignore[misc]
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


async def test_ensure_database_creates_it(scratch_db: str) -> None:
    await asyncio.gather(*(ensure_database(scratch_db) for _ in range(3)))
    conn = await asyncpg.connect(scratch_db)
    await conn.close()


async def test_concurrent_migrations_apply_once(scratch_db: str) -> None:
    await ensure_database(scratch_db)
    conns = [await asyncpg.connect(scratch_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for result in results for name in result]
        expected = [p.name for p in migration_files()]
        assert sorted(applied) == sorted(expected)  # each file applied by exactly one caller
        recorded = await conns[0].fetch("select name from schema_migrations order by name")
        assert [r["name"] for r in recorded] == expected
        assert await migrate(conns[0]) == []  # idempotent
        tables = {
            r["tablename"]
            for r in await conns[0].fetch(
                "select tablename from pg_tables where schemaname='public'"
            )
        }
        assert {
            "city_rooms",
            "city_room_messages",
            "city_feed_events",
            "secondme_sessions",
            "secondme_messages",
            "matrix_outbox",
        } <= tables
    finally:
        for c in conns:
            await c.close()


def test_settings_fail_fast_with_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="CITY_JWT_SECRET is required"):
        load_settings(_env_file=None, city_env="production", city_jwt_secret=None)
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings(_env_file=None, city_env="production", city_jwt_secret="changeme")
    with pytest.raises(ConfigError, match="MATRIX_SERVER_NAME"):
        load_settings(
            _env_file=None,
            city_jwt_secret="s" * 32,
            matrix_homeserver_url="http://127.0.0.1:8008",
        )
    with pytest.raises(ConfigError, match="PRESENCE_TTL_SECONDS"):
        load_settings(_env_file=None, city_jwt_secret="s" * 32, presence_ttl_seconds=-1)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.app.cli", *args],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_token_and_migrate(scratch_db: str) -> None:
    env = settings_env(make_settings(database_url=scratch_db))
    out = _cli("token", "u_123", "--name", "Alice", env=env)
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u_123" and claims["name"] == "Alice" and claims["exp"] > 0

    bad = _cli("token", "not-a-user", env=env)
    assert bad.returncode == 2 and "USER_ID" in bad.stderr

    first = _cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "0001_init.sql" in first.stdout
    second = _cli("migrate", env=env)
    assert second.returncode == 0 and "applied 0 migration(s)" in second.stdout


def test_cli_missing_secret_is_one_line() -> None:
    out = _cli("serve", env={"CITY_ENV": "production"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["city-gateway: CITY_JWT_SECRET is required"]
