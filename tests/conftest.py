"""Shared fixtures: a private database and Redis prefix per test run, clean per test.

Several test runs may share this machine's PostgreSQL and Redis at once, so a run
never drops what it did not create: its own database `city_test_<run>` and Redis
keys under its own prefix.

`TEST_REDIS_BACKEND=cluster` runs the same tests against a local Redis Cluster of
three masters started for the session (tests/redis_cluster.py); `make test` runs
the presence and fanout suites that way too. Tests that start their own
redis-server (to kill or count it) stay on one Redis and are skipped in that run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.infra.db import ensure_database
from gateway.infra.migrate import migrate
from gateway.infra.redis_clients import redis_client as build_redis_client
from gateway.infra.settings import Settings
from tests.redis_cluster import LocalCluster
from tests.servers import InProcessGateway

RUN_ID = secrets.token_hex(4)
PG_BASE = os.environ.get("TEST_PG_BASE", "postgresql://postgres@127.0.0.1:5432")
DATABASE_URL = f"{PG_BASE}/city_test_{RUN_ID}"
REDIS_CLUSTER = os.environ.get("TEST_REDIS_BACKEND", "single") == "cluster"
# The cluster's ports are chosen now so that REDIS_URL is known at import; the
# session fixture `redis_backend` starts it before the first test.
_CLUSTER = LocalCluster() if REDIS_CLUSTER else None
REDIS_URL = (
    _CLUSTER.url if _CLUSTER else os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
)
REDIS_PREFIX = f"t{RUN_ID}:"
JWT_SECRET = secrets.token_urlsafe(32)
INTERNAL_TOKEN = secrets.token_urlsafe(32)

# Tables emptied before each test (schema_migrations keeps the schema applied).
_KEEP_TABLES = {"schema_migrations"}


GENEROUS_LIMITS: dict[str, Any] = {
    "limit_messages_per_second": 100_000,
    "limit_messages_burst": 100_000,
    "limit_rooms_per_hour": 100_000,
    "limit_presence_devices": 1000,
    "limit_heartbeats_per_second": 100_000,
    "limit_heartbeats_burst": 100_000,
    "limit_websockets_per_user": 100_000,
    "limit_secondme_invites_per_hour": 100_000,
}
# The shipped defaults of those limits, for the tests that check them.
SECURITY_DEFAULTS: dict[str, Any] = {
    name: Settings.model_fields[name].default for name in GENEROUS_LIMITS
}


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "city_env": "test",
        "database_url": DATABASE_URL,
        "redis_url": REDIS_URL,
        "city_redis_prefix": REDIS_PREFIX,
        "city_jwt_secret": JWT_SECRET,
        "city_internal_token": INTERNAL_TOKEN,
        "log_format": "human",
        # The suite at large drives many messages, rooms, sockets and heartbeats from a
        # few users as fast as it can; the public limits (SPEC §12) are tested at their
        # defaults by the tests that pass SECURITY_DEFAULTS (tests/*/test_hardening_*).
        **GENEROUS_LIMITS,
    }
    # A test's own redis-server (redis_url given) is a single Redis.
    values["redis_cluster"] = REDIS_CLUSTER and "redis_url" not in overrides
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session", autouse=True)
def redis_backend() -> Iterator[str]:
    """Starts (and at the end stops) the local cluster when the run asks for one."""
    if _CLUSTER is None:
        yield "single"
        return
    _CLUSTER.start()
    yield "cluster"
    _CLUSTER.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not REDIS_CLUSTER:
        return
    skip = pytest.mark.skip(reason="kills or counts a redis-server of its own: single Redis only")
    for item in items:
        if {"private_redis", "own_redis"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[str]:
    await ensure_database(DATABASE_URL)
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield DATABASE_URL
    admin = await asyncpg.connect(f"{PG_BASE}/postgres")
    try:
        await admin.execute(f'drop database if exists "city_test_{RUN_ID}" with (force)')
    finally:
        await admin.close()


async def delete_prefixed(client: aioredis.Redis) -> None:
    async for key in client.scan_iter(match=f"{REDIS_PREFIX}*", count=1000):
        await client.delete(key)


@pytest.fixture(scope="session")
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    # A RedisCluster client in the cluster run (typed as Redis: the same commands).
    client = build_redis_client(REDIS_URL, cluster=REDIS_CLUSTER)
    yield client
    await delete_prefixed(client)
    await client.aclose()


@pytest.fixture
async def clean(database: str, redis_client: aioredis.Redis) -> AsyncIterator[None]:
    """A clean schema and an empty Redis namespace for this test."""
    conn = await asyncpg.connect(database)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("select tablename from pg_tables where schemaname='public'")
            if r["tablename"] not in _KEEP_TABLES
        ]
        if tables:
            await conn.execute(
                "truncate " + ", ".join(f'"{t}"' for t in tables) + " restart identity cascade"
            )
    finally:
        await conn.close()
    await delete_prefixed(redis_client)
    yield


@pytest.fixture
async def db(clean: None, database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database)
    yield conn
    await conn.close()


GatewayFactory = Callable[..., Awaitable[InProcessGateway]]


@pytest.fixture
async def gateway_factory(clean: None) -> AsyncIterator[GatewayFactory]:
    """Start real in-process gateways (uvicorn on a free port) with setting overrides."""
    started: list[InProcessGateway] = []

    async def start(**overrides: Any) -> InProcessGateway:
        gw = await InProcessGateway(make_settings(**overrides)).start()
        started.append(gw)
        return gw

    yield start
    for gw in reversed(started):
        await gw.stop()


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> InProcessGateway:
    return await gateway_factory()
