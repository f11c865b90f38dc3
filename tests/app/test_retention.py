"""Retention (docs/data-retention.md): the feed by age (core), the inbox (bridge).

Rows are aged by writing their timestamps directly; every delete runs the real SQL
against PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from bridge.retention import prune_inbox
from gateway.core.feed_retention import FeedRetention
from gateway.core.storage.retention import prune_feed
from tests.conftest import GatewayFactory
from tests.servers import wait_until


async def add_feed(db: asyncpg.Connection, event_id: str, days_ago: float) -> None:
    await db.execute(
        """insert into city_feed_events (id, kind, payload, created_at)
           values ($1, 'system', '{}'::jsonb, now() - make_interval(secs => $2))""",
        event_id,
        days_ago * 86400.0,
    )


async def feed_ids(db: asyncpg.Connection) -> set[str]:
    return {r["id"] for r in await db.fetch("select id from city_feed_events")}


AGES = {"evt_now": 0, "evt_29d": 29, "evt_31d": 31, "evt_90d": 90, "evt_400d": 400}


@pytest.fixture
async def aged_feed(db: asyncpg.Connection) -> asyncpg.Connection:
    for event_id, days in AGES.items():
        await add_feed(db, event_id, days)
    return db


@pytest.fixture
async def pool(database: str, clean: None) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database, min_size=1, max_size=4) as p:
        yield p


async def test_feed_events_older_than_the_horizon_are_pruned(
    aged_feed: asyncpg.Connection,
) -> None:
    assert await prune_feed(aged_feed, 30) == 3
    assert await feed_ids(aged_feed) == {"evt_now", "evt_29d"}


async def test_feed_prune_runs_in_batches_until_done(aged_feed: asyncpg.Connection) -> None:
    # Three old rows, one per DELETE: three batches and a last empty one.
    assert await prune_feed(aged_feed, 30, batch=1) == 3
    assert await feed_ids(aged_feed) == {"evt_now", "evt_29d"}


async def test_a_sweep_stops_at_its_batch_cap_and_the_next_goes_on(
    aged_feed: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    retention = FeedRetention(pool, 30, batch=1, max_batches=2)
    assert await retention.sweep() == 2  # oldest first
    assert await feed_ids(aged_feed) == {"evt_now", "evt_29d", "evt_31d"}
    assert await retention.sweep() == 1
    assert await feed_ids(aged_feed) == {"evt_now", "evt_29d"}


async def test_keep_days_zero_keeps_the_whole_feed(
    aged_feed: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    assert await prune_feed(aged_feed, 0) == 0
    assert await FeedRetention(pool, 0).sweep() == 0
    assert await feed_ids(aged_feed) == set(AGES)


async def test_one_sweep_at_a_time_across_processes(
    aged_feed: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """A process that finds the sweep lock taken skips its round (None)."""
    retention = FeedRetention(pool, 30)
    # Another process (this connection) is sweeping: the lock is held.
    await aged_feed.execute("select pg_advisory_lock($1)", 0x43_46_45_44)
    assert await retention.sweep() is None
    assert await feed_ids(aged_feed) == set(AGES)
    await aged_feed.execute("select pg_advisory_unlock($1)", 0x43_46_45_44)
    # Several at once: each old row is deleted once in all, and nothing else.
    results = await asyncio.gather(*(FeedRetention(pool, 30).sweep() for _ in range(4)))
    assert sum(r or 0 for r in results) == 3
    assert await feed_ids(aged_feed) == {"evt_now", "evt_29d"}


async def test_the_gateway_prunes_its_feed_periodically(
    aged_feed: asyncpg.Connection, gateway_factory: GatewayFactory
) -> None:
    """Wired in the runtime: CITY_FEED_KEEP_DAYS=30 removes the old rows after start."""
    await gateway_factory(city_feed_keep_days=30)
    await wait_until(lambda: _only_recent(aged_feed), timeout=20)


async def _only_recent(db: asyncpg.Connection) -> bool:
    return await feed_ids(db) == {"evt_now", "evt_29d"}


async def test_the_gateway_keeps_its_feed_with_keep_days_zero(
    aged_feed: asyncpg.Connection, gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(city_feed_keep_days=0)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "feed-retention"]
    assert (await gw.http.get("/city/feed")).status_code == 200
    assert await feed_ids(aged_feed) == set(AGES)


# --- the bridge's inbox ----------------------------------------------------------------


async def add_inbox(db: asyncpg.Connection, event_id: str, state: str, hours_ago: float) -> None:
    await db.execute(
        """insert into matrix_inbox (event_id, event, state, received_at)
           values ($1, $2::jsonb, $3, now() - make_interval(secs => $4))""",
        event_id,
        orjson.dumps({"event_id": event_id}).decode(),
        state,
        hours_ago * 3600.0,
    )


async def test_inbox_keeps_pending_rows_recent_processed_and_failed_for_a_week(
    db: asyncpg.Connection,
) -> None:
    rows = {
        "$pending_30d": ("pending", 30 * 24),  # never pruned, however old
        "$done_23h": ("done", 23),
        "$done_25h": ("done", 25),
        "$dropped_3d": ("dropped", 72),
        "$failed_3d": ("failed", 72),  # failed rows stay a week, for operators
        "$failed_8d": ("failed", 8 * 24),
    }
    for event_id, (state, hours) in rows.items():
        await add_inbox(db, event_id, state, hours)
    assert await prune_inbox(db, batch=2) == 3
    left = {r["event_id"] for r in await db.fetch("select event_id from matrix_inbox")}
    assert left == {"$pending_30d", "$done_23h", "$failed_3d"}
