"""The composition root: everything a running process holds, built in one order.

Built in the app's lifespan (never at import time) so that tests and several
processes each get their own, and torn down in reverse order on shutdown (one
AsyncExitStack). Each part's starter takes what it needs as typed arguments and
returns its object; nothing is attached to a part after it is built. Where the core
needs an adapter (who is online in a room, where `room.presence` goes, a user's
Matrix id, an agent that answers, a Matrix room to answer in), the adapter is
passed to the core's constructor as the Protocol the core declares.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bridge.media import start_matrix_media
from bridge.naming import matrix_identity
from bridge.secondme_bot import SecondMeBot, start_secondme_bot
from bridge.secondme_channel import SecondMeChannel
from bridge.service import Bridge, start_bridge
from bridge.storage import OutboxQueue
from gateway.adapters.agents_core import start_agents_core
from gateway.adapters.nats_bus import NatsBus, start_nats_bus
from gateway.app.metrics import ScrapeGauges, start_metrics
from gateway.core.events import CityHooks
from gateway.core.feed import FeedService
from gateway.core.feed_retention import start_feed_retention
from gateway.core.media import MediaService
from gateway.core.members import RoomMembersService
from gateway.core.message_changes import CityMessageChanges
from gateway.core.messages import MessageService
from gateway.core.ports import MatrixMembers, NoMatrixMembers, ReadyCheck
from gateway.core.presence.service import PresenceService, build_presence, start_presence
from gateway.core.ratelimit import TokenBucket
from gateway.core.reactions import ReactionService
from gateway.core.rooms import RoomService
from gateway.core.search import SearchService
from gateway.core.secondme.mentions import CityMentions, start_room_replies
from gateway.core.secondme.replies import SecondMeReplies
from gateway.core.secondme.service import SecondMeService, build_secondme
from gateway.infra import db as database
from gateway.infra.migrate import migrate
from gateway.infra.redis_clients import redis_client
from gateway.infra.settings import Settings
from gateway.realtime.hub import Realtime, start_realtime


@dataclass
class Runtime:
    """One process's collaborators, one typed attribute each.

    It satisfies the Protocols through which the routes see it
    (gateway.http.deps.Services, gateway.realtime.deps.RealtimeServices).
    """

    settings: Settings
    db: asyncpg.Pool
    redis: aioredis.Redis
    hooks: CityHooks
    rooms: RoomService
    messages: MessageService
    feed: FeedService
    members: RoomMembersService
    search: SearchService
    reactions: ReactionService
    message_changes: CityMessageChanges
    media: MediaService
    realtime: Realtime
    presence: PresenceService
    secondme: SecondMeService
    metrics: ScrapeGauges
    # Optional parts: None when not configured.
    bridge: Bridge | None  # MATRIX_HOMESERVER_URL
    nats: NatsBus | None  # NATS_URL
    secondme_replies: SecondMeReplies | None  # AGENTS_CORE_URL (or NATS transport)
    secondme_mentions: CityMentions | None  # likewise
    secondme_bot: SecondMeBot | None  # Second Me and the bridge both on
    # name -> check that raises when that dependency is not usable (for /readyz)
    ready_checks: dict[str, ReadyCheck] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        # Pushed first, so it runs last: background loops outlive every part they use.
        stack.push_async_callback(_cancel_tasks, tasks)

        # 1. Storage: PostgreSQL (migrated when CITY_AUTO_MIGRATE) and Redis.
        pool = await database.create_pool(settings.database_url, settings.database_pool_size)
        stack.push_async_callback(pool.close)
        if settings.city_auto_migrate:
            async with pool.acquire() as conn:
                await migrate(conn)
        # One Redis, or a Redis Cluster with REDIS_CLUSTER (docs/redis-cluster.md).
        redis = redis_client(
            settings.redis_url, cluster=settings.redis_cluster, health_check_interval=10
        )
        stack.push_async_callback(redis.aclose)

        async def postgres_ready() -> None:
            await pool.fetchval("select 1")

        async def redis_ready() -> None:
            await redis.ping()

        ready_checks: dict[str, ReadyCheck] = {"postgres": postgres_ready, "redis": redis_ready}

        # 2. The city's rules that need no adapter. Listeners subscribe to `hooks`
        #    below, in this order (it is the order they hear of each event).
        hooks = CityHooks()
        messages = MessageService(
            pool,
            hooks,
            max_chars=settings.city_message_max_chars,
            # With the bridge, city-authored messages are queued for Matrix in the
            # same statement that stores them (the bridge owns matrix_outbox).
            outbox=OutboxQueue() if settings.matrix_enabled else None,
            limiter=_bucket(
                redis,
                settings,
                "messages",
                settings.limit_messages_per_second,
                settings.limit_messages_burst,
            ),
        )
        feed = FeedService(pool)
        search = SearchService(pool)
        # Reactions, and city users' edits and deletes of their own messages: queued
        # for Matrix like posts, counted in the same per-user message budget.
        change_outbox = OutboxQueue() if settings.matrix_enabled else None
        reactions = ReactionService(
            pool, hooks, outbox=change_outbox, limiter=_messages_bucket(redis, settings)
        )
        message_changes = CityMessageChanges(
            pool,
            hooks,
            reactions,
            max_chars=settings.city_message_max_chars,
            outbox=change_outbox,
            limiter=_messages_bucket(redis, settings),
        )

        # 3. Realtime (room sockets, fanout, membership): the rooms count online
        #    members with it, presence sends `room.presence` through it.
        realtime = await start_realtime(
            settings, db=pool, redis=redis, messages=messages, hooks=hooks, stack=stack
        )
        rooms = RoomService(
            pool,
            hooks,
            realtime.members,
            limiter=_bucket(
                redis,
                settings,
                "rooms",
                settings.limit_rooms_per_hour / 3600,
                settings.limit_rooms_per_hour,
            ),
        )

        # 4. Presence, built but not running yet (the bridge reads its statuses);
        #    a user's Matrix id comes from the bridge's naming.
        presence = build_presence(
            settings,
            hooks,
            rooms=realtime,
            sockets=realtime.presence_sockets,
            identity=matrix_identity(settings),
            stack=stack,
        )

        # 5. The Matrix bridge (None unless MATRIX_HOMESERVER_URL).
        bridge = await start_bridge(
            settings,
            db=pool,
            messages=messages,
            rooms=rooms,
            reactions=reactions,
            hooks=hooks,
            city_presence=presence,
            redis=redis,
            activity=realtime,
            stack=stack,
        )
        if bridge is not None:
            ready_checks["synapse"] = bridge.check_ready
        # A room's members: its sockets now, and the Matrix room's real users.
        matrix_members: MatrixMembers = bridge.roster if bridge is not None else NoMatrixMembers()
        members = RoomMembersService(pool, realtime, presence, matrix_members)
        # Media from Matrix, streamed through the appservice (its own HTTP client).
        media = MediaService(
            pool, start_matrix_media(settings, stack), max_bytes=settings.city_media_max_bytes
        )

        # 6. Second Me: the service always (it answers 503 when off); with an Agents
        #    Core, replies to mentions in city rooms, and with the bridge too, the
        #    Matrix bot (DMs, invites, Matrix mentions).
        agents = start_agents_core(settings, stack)
        secondme = build_secondme(settings, db=pool, redis=redis, agents=agents)
        mentions: CityMentions | None = None
        bot: SecondMeBot | None = None
        if agents is not None:
            mentions = start_room_replies(
                settings,
                db=pool,
                service=secondme,
                messages=messages,
                hooks=hooks,
                matrix=SecondMeChannel(bridge) if bridge is not None else None,
                stack=stack,
            )
            if bridge is not None:
                bot = start_secondme_bot(
                    bridge,
                    mentions.replies,
                    mentions.rule,
                    settings,
                    db=pool,
                    redis=redis,
                    stack=stack,
                )
            _spawn(tasks, "secondme-sweeper", mentions.sweep_forever())

        # 7. Metrics: counts what the hooks announce; DB gauges on scrape.
        metrics = start_metrics(pool, hooks)

        # Feed retention (CITY_FEED_KEEP_DAYS; off at 0): a periodic prune, one sweep
        # at a time across every process (gateway/core/feed_retention.py).
        start_feed_retention(pool, settings.city_feed_keep_days, stack)

        # 8. NATS (None unless NATS_URL): publishes what the others announce.
        nats = start_nats_bus(settings, hooks, stack)

        # 9. Presence starts last, after every hook listener: on shutdown it stops
        #    first and drains its transitions while the listeners still run.
        ready_checks["presence"] = await start_presence(
            presence, settings, stack, subscriber=realtime.fanout.subscriber
        )

        rt = Runtime(
            settings=settings,
            db=pool,
            redis=redis,
            hooks=hooks,
            rooms=rooms,
            messages=messages,
            feed=feed,
            members=members,
            search=search,
            reactions=reactions,
            message_changes=message_changes,
            media=media,
            realtime=realtime,
            presence=presence,
            secondme=secondme,
            metrics=metrics,
            bridge=bridge,
            nats=nats,
            secondme_replies=mentions.replies if mentions is not None else None,
            secondme_mentions=mentions,
            secondme_bot=bot,
            ready_checks=ready_checks,
            tasks=tasks,
        )
        await rooms.ensure_defaults(settings.default_room_slugs)
        yield rt


def _bucket(
    redis: aioredis.Redis, settings: Settings, name: str, rate_per_second: float, burst: int
) -> TokenBucket:
    return TokenBucket(
        redis,
        prefix=settings.city_redis_prefix,
        name=name,
        rate_per_second=rate_per_second,
        burst=burst,
    )


def _messages_bucket(redis: aioredis.Redis, settings: Settings) -> TokenBucket:
    """The per-user message budget (same Redis key as MessageService's: one budget)."""
    return _bucket(
        redis,
        settings,
        "messages",
        settings.limit_messages_per_second,
        settings.limit_messages_burst,
    )


def _spawn(tasks: list[asyncio.Task[None]], name: str, coro: Coroutine[Any, Any, None]) -> None:
    """Run a background loop for the life of the process."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    tasks.append(task)


async def _cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
