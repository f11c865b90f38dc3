"""Everything a running process holds: pools, services, background tasks.

Built in the app's lifespan (never at import time) so that tests and several
processes each get their own, and torn down in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from gateway.core.events import CityHooks
from gateway.core.feed import FeedService
from gateway.core.messages import MessageService
from gateway.core.ports import NoOnlineMembers
from gateway.core.ratelimit import TokenBucket
from gateway.core.rooms import RoomService
from gateway.infra import db as database
from gateway.infra.migrate import migrate
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    settings: Settings
    db: asyncpg.Pool
    redis: aioredis.Redis
    hooks: CityHooks
    rooms: RoomService
    messages: MessageService
    feed: FeedService
    # name -> check that raises when the dependency is not usable (for /readyz)
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    # Optional parts attach themselves here (realtime, bridge, second me, ...).
    extensions: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, name: str, coro: Awaitable[None]) -> None:
        """Run a background loop for the life of the process."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.append(task)


# A subsystem's starter is called with the runtime once the core is up; it attaches
# itself (hooks, extensions, ready checks, background tasks) and pushes its cleanup
# on the exit stack, so shutdown runs in reverse order of start.
Starter = Callable[[Runtime, AsyncExitStack], Awaitable[None]]


def subsystem_starters() -> list[Starter]:
    """The optional parts, in start order (later ones may use earlier ones)."""
    # Imported here so the core does not depend on the parts at import time.
    from bridge.service import start_bridge
    from gateway.adapters.nats_bus import start_nats_bus
    from gateway.app.metrics import start_metrics
    from gateway.core.presence.service import start_presence
    from gateway.core.secondme.service import start_secondme
    from gateway.realtime.hub import start_realtime

    return [
        start_realtime,  # room sockets, fanout, members_online: first
        start_bridge,  # Matrix bridge (off unless MATRIX_HOMESERVER_URL)
        start_secondme,
        start_metrics,  # counts hook events; DB gauges on scrape
        start_nats_bus,  # publishes what the others announce (NATS_URL)
        # After every hook listener: on shutdown it drains its transitions while they run.
        start_presence,
    ]


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        pool = await database.create_pool(settings.database_url, settings.database_pool_size)
        stack.push_async_callback(pool.close)
        if settings.city_auto_migrate:
            async with pool.acquire() as conn:
                await migrate(conn)
        redis = aioredis.from_url(
            settings.redis_url, decode_responses=True, health_check_interval=10
        )
        stack.push_async_callback(redis.aclose)
        hooks = CityHooks()
        rt = Runtime(
            settings=settings,
            db=pool,
            redis=redis,
            hooks=hooks,
            rooms=RoomService(
                pool,
                hooks,
                NoOnlineMembers(),
                limiter=TokenBucket(
                    redis,
                    prefix=settings.city_redis_prefix,
                    name="rooms",
                    rate_per_second=settings.limit_rooms_per_hour / 3600,
                    burst=settings.limit_rooms_per_hour,
                ),
            ),
            messages=MessageService(
                pool,
                hooks,
                max_chars=settings.city_message_max_chars,
                matrix_enabled=settings.matrix_enabled,
                limiter=TokenBucket(
                    redis,
                    prefix=settings.city_redis_prefix,
                    name="messages",
                    rate_per_second=settings.limit_messages_per_second,
                    burst=settings.limit_messages_burst,
                ),
            ),
            feed=FeedService(pool),
        )

        async def postgres_ready() -> None:
            await pool.fetchval("select 1")

        async def redis_ready() -> None:
            await redis.ping()

        rt.ready_checks["postgres"] = postgres_ready
        rt.ready_checks["redis"] = redis_ready
        stack.push_async_callback(_cancel_tasks, rt)
        for starter in subsystem_starters():
            await starter(rt, stack)
        await rt.rooms.ensure_defaults(settings.default_room_slugs)
        yield rt


async def _cancel_tasks(rt: Runtime) -> None:
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
