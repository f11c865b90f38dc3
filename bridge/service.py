"""The bridge object a process holds, its start-up against Synapse, and its starter.

Start-up never blocks the city API: everything that needs Synapse runs in background
tasks that retry, and `/readyz` reports what is missing (`checks.synapse`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bridge import retention, storage
from bridge.ephemeral import EphemeralHandler
from bridge.ghosts import Ghosts
from bridge.inbox import Inbox, InboxListeners
from bridge.matrix import MatrixClient, MatrixError, MatrixUnavailable
from bridge.members import MatrixRoster
from bridge.naming import Names
from bridge.outbox import OutboxSender
from bridge.power_levels import PowerLevels
from bridge.presence import PresenceMirror
from bridge.presence_audience import Audience
from bridge.rooms import RoomMapper
from bridge.typing import GhostTyping
from gateway.core.events import CityHooks
from gateway.core.messages import MessageService
from gateway.core.models import Message, ReactionChange, Room
from gateway.core.ports import MatrixRoomActivity, PresenceStatuses
from gateway.core.reactions import ReactionService
from gateway.core.rooms import RoomService
from gateway.infra import db as database
from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

_MAINTENANCE_SECONDS = 30.0
_PING_FAILURES = ("M_CONNECTION_FAILED", "M_CONNECTION_TIMEOUT", "M_BAD_STATUS")


class BridgeStartError(Exception):
    """Synapse answered, but not the way a correctly registered appservice expects."""


class Bridge:
    """One process's Matrix bridge (the runtime's `bridge`, None when not configured).

    For other parts (Second Me):
    - `listeners.messages` — called with an `InboundMessage` for each message a real
      Matrix user sends into a room our users are in (bridged or not, e.g. a DM to
      Second Me), once cluster-wide, after the city copy (if any) is committed;
      `listeners.events` gets every other event too (invites, members...).
    - `send_text(matrix_room_id, body, as_user=...)`, `ensure_user`, `join`.
    - `names.secondme`, `names.bot`, `names.ghost_for(city_user_id)`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        db: asyncpg.Pool,
        outbox_pool: asyncpg.Pool,
        matrix: MatrixClient,
        messages: MessageService,
        rooms: RoomService,
        reactions: ReactionService,
        hooks: CityHooks,
        city_presence: PresenceStatuses,
        redis: aioredis.Redis,
        activity: MatrixRoomActivity,
    ) -> None:
        self.settings = settings
        self.names = Names.from_settings(settings)
        self.matrix = matrix
        self._db = db
        self._city_presence = city_presence
        self.ghosts = Ghosts(db, matrix, self.names)
        self.rooms = RoomMapper(db, matrix, self.names, rooms)
        self.synapse_ok = False  # whoami answered as our bot: the outbox may send
        self.problem: str | None = "starting: Synapse not contacted yet"
        self.started = asyncio.Event()
        self.outbox = OutboxSender(
            outbox_pool,
            matrix,
            self.names,
            self.rooms,
            self.ghosts,
            messages,
            reactions,
            concurrency=settings.matrix_outbox_concurrency,
            poll_seconds=settings.matrix_outbox_poll_seconds,
            retry_max_seconds=settings.matrix_retry_max_seconds,
            gate=lambda: self.synapse_ok,
            on_recovered=self.on_synapse_back,
        )
        self.inbox = Inbox(
            db,
            messages,
            hooks,
            self.names,
            PowerLevels(matrix, self.names.bot),
            max_chars=settings.city_message_max_chars,
            reactions=reactions,
        )
        self.roster = MatrixRoster(
            redis,
            db,
            matrix,
            self.names,
            prefix=settings.city_redis_prefix,
            ready=lambda: self.synapse_ok,
        )
        self.presence = PresenceMirror(
            db,
            matrix,
            self.names,
            self.ghosts,
            refresh_seconds=settings.matrix_presence_refresh_seconds,
            debounce_seconds=settings.matrix_presence_debounce_seconds,
            # A live user heartbeats within the TTL: a longer difference is real.
            reconcile_after_seconds=settings.presence_ttl_seconds,
            city_statuses=self._city_statuses,
            # Only ghosts a real Matrix user shares a room with (issue 13).
            audience=Audience(db, self.roster),
        )
        matrix.on_acted_as = self.presence.after_ghost_action
        # Typing both ways, Matrix members and their presence (SPEC §13).
        self.typing = GhostTyping(
            matrix, self.names, self.rooms, self.ghosts, ready=lambda: self.synapse_ok
        )
        self.inbox.listeners.events.append(self.roster.on_event)
        # After the roster: a join is in the roster when the mirror looks at it.
        self.inbox.listeners.events.append(self.presence.on_member_event)
        self.ephemeral = EphemeralHandler(
            redis, db, self.names, self.roster, activity, prefix=settings.city_redis_prefix
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()

    # --- for other parts ---------------------------------------------------------
    @property
    def listeners(self) -> InboxListeners:
        return self.inbox.listeners

    async def ensure_user(self, user_id: str, display_name: str | None = None) -> None:
        await self.ghosts.ensure(user_id, display_name)

    async def join(self, matrix_room_id: str, user_id: str) -> None:
        await self.ghosts.ensure(user_id)
        await self.ghosts.ensure_joined(user_id, matrix_room_id)

    async def send_text(
        self,
        matrix_room_id: str,
        body: str,
        *,
        as_user: str,
        msgtype: str = "m.text",
        txn_id: str | None = None,
        extra_content: dict[str, Any] | None = None,
    ) -> str:
        """Send a message straight into a Matrix room as one of our users.

        Pass a stable `txn_id` when retrying. This does not create a city message: to
        speak in a bridged room on both sides, post a city message instead (an agent
        author is sent to Matrix by the outbox — Second Me's agent as `names.secondme`).
        """
        await self.join(matrix_room_id, as_user)
        content: dict[str, Any] = {"msgtype": msgtype, "body": body, **(extra_content or {})}
        return await self.matrix.send(
            matrix_room_id,
            "m.room.message",
            txn_id or f"city_{secrets.token_hex(12)}",
            content,
            as_user,
        )

    async def _city_statuses(self, user_ids: list[str]) -> dict[str, str] | None:
        """Each user's city presence (for the mirror's reconciliation)."""
        return {s.user_id: s.status for s in await self._city_presence.statuses(user_ids)}

    # --- start-up ------------------------------------------------------------------
    async def connect(self) -> None:
        """Wait for Synapse, check our registration, prepare rooms; retries forever."""
        delay = 0.5
        url = self.matrix.base_url
        while True:
            try:
                await self.matrix.versions(timeout=5)
                whoami = await self.matrix.whoami()
                if whoami != self.names.bot:
                    raise BridgeStartError(
                        f"MATRIX_AS_TOKEN belongs to {whoami}, not {self.names.bot}"
                    )
                await self.ghosts.ensure(self.names.bot)
                self.synapse_ok = True
                self.outbox.nudge()
                await self._ping()
                await self.sync_rooms()
                self.problem = None
                self.started.set()
                log.info("Matrix bridge connected to %s as %s", url, whoami)
                return
            except MatrixUnavailable as exc:
                self.problem = f"Synapse unreachable at {url}: {exc}"
            except MatrixError as exc:
                if exc.errcode == "M_UNKNOWN_TOKEN":
                    self.problem = (
                        "Synapse does not accept MATRIX_AS_TOKEN: is the appservice"
                        " registration (`city-gateway registration`) loaded?"
                    )
                else:
                    self.problem = f"Synapse error during start-up: {exc}"
            except BridgeStartError as exc:
                self.problem = str(exc)
            except Exception as exc:
                log.exception("bridge start-up failed")
                self.problem = f"bridge start-up failed: {type(exc).__name__}: {exc}"
            log.warning("Matrix bridge not ready (retrying in %.1fs): %s", delay, self.problem)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.settings.matrix_retry_max_seconds)

    async def _ping(self, attempts: int = 20) -> None:
        """Synapse calls us back: proves MATRIX_APPSERVICE_URL reaches this service.

        A successful ping also makes Synapse retry the transactions it queued while we
        were away at once, instead of after its back-off (up to ~8 minutes). At
        start-up our own listener may not be bound yet, hence a few quick retries.
        """
        for attempt in range(attempts):
            try:
                await self.matrix.ping(self.settings.matrix_appservice_id, secrets.token_hex(8))
                return
            except MatrixError as exc:
                if exc.status == 404 and exc.errcode == "M_UNRECOGNIZED":
                    return  # a homeserver without the ping endpoint (before Matrix 1.7)
                if exc.errcode not in _PING_FAILURES:
                    raise
                if attempt == attempts - 1:
                    raise BridgeStartError(
                        f"Synapse cannot reach the appservice at"
                        f" {self.settings.matrix_appservice_url}: {exc.message}"
                    ) from None
            await asyncio.sleep(0.25)

    async def on_synapse_back(self) -> None:
        """After an outage: ping so Synapse also resumes pushing to us right away."""
        try:
            await self._ping(attempts=1)
        except Exception as exc:
            log.warning("ping after Synapse's return failed: %s", exc)

    async def sync_rooms(self) -> None:
        """Create the Matrix room of every city room that has none yet."""
        for room_id, _, _ in await storage.unmapped_rooms(self._db):
            await self.rooms.matrix_room_for(room_id)

    async def check_ready(self) -> None:
        if self.problem is not None:
            raise RuntimeError(self.problem)
        try:
            await self.matrix.versions(timeout=1.5)
        except MatrixUnavailable as exc:
            raise RuntimeError(f"Synapse unreachable at {self.matrix.base_url}: {exc}") from None

    # --- hooks -----------------------------------------------------------------------
    async def on_message(self, message: Message) -> None:
        if message.author_matrix_id is None:
            self.outbox.nudge(message.room_id)

    async def on_reaction(self, change: ReactionChange) -> None:
        if change.user_id is not None:  # a city reaction: queued for Matrix
            self.outbox.nudge(change.room_id)

    async def on_room(self, room: Room) -> None:
        """Create the Matrix room before `POST /city/rooms` answers 201 (bounded wait).

        So `#city_{slug}:S` is joinable as soon as the client hears of the room; if
        Synapse is slow the creation goes on in the background (and the sweep retries).
        """
        if not self.synapse_ok:
            return  # connect() creates it once Synapse is there
        task = asyncio.create_task(self._create_room(room))
        self._side_tasks.add(task)  # cancelled on shutdown; keeps going after a timeout
        task.add_done_callback(self._side_tasks.discard)
        try:
            await asyncio.wait_for(
                asyncio.shield(task), self.settings.matrix_request_timeout_seconds
            )
        except TimeoutError:
            log.warning("the Matrix room of %s is still being created", room.id)

    async def _create_room(self, room: Room) -> None:
        try:
            await self.rooms.ensure(room)
        except Exception as exc:
            # The maintenance sweep tries again.
            log.warning("creating the Matrix room of %s failed: %s", room.id, exc)

    def _side_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _maintenance(self) -> None:
        await self.started.wait()
        while True:
            await asyncio.sleep(_MAINTENANCE_SECONDS)
            try:
                await self.sync_rooms()
                # 24 h for processed rows, 7 days for failed ones (docs/data-retention.md).
                await retention.prune_inbox(self._db)
            except Exception as exc:
                log.warning("Matrix maintenance sweep failed: %s", exc)

    # --- life ------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        self._spawn("bridge.connect", self.connect())
        self._spawn("bridge.outbox", self.outbox.run())
        self._spawn("bridge.inbox", self.inbox.run_retries(5.0))
        self._spawn(
            "bridge.presence", self.presence.run(min(1.0, s.matrix_presence_refresh_seconds))
        )
        self._spawn("bridge.maintenance", self._maintenance())

    def _spawn(self, name: str, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_bridge(
    settings: Settings,
    *,
    db: asyncpg.Pool,
    messages: MessageService,
    rooms: RoomService,
    reactions: ReactionService,
    hooks: CityHooks,
    city_presence: PresenceStatuses,
    redis: aioredis.Redis,
    activity: MatrixRoomActivity,
    stack: AsyncExitStack,
) -> Bridge | None:
    """Starter: the bridge (None unless MATRIX_HOMESERVER_URL), listening to the hooks."""
    if not settings.matrix_enabled:
        return None
    assert settings.matrix_homeserver_url is not None and settings.matrix_as_token is not None
    # The outbox holds a connection per room while a send is in flight: its own pool,
    # so a slow Synapse can never starve the city API of connections.
    pool = await database.create_pool(settings.database_url, settings.matrix_outbox_concurrency + 1)
    stack.push_async_callback(pool.close)
    matrix = MatrixClient(
        settings.matrix_homeserver_url,
        settings.matrix_as_token.get_secret_value(),
        timeout=settings.matrix_request_timeout_seconds,
        max_connections=settings.matrix_outbox_concurrency * 2 + 10,
    )
    stack.push_async_callback(matrix.aclose)
    bridge = Bridge(
        settings,
        db=db,
        outbox_pool=pool,
        matrix=matrix,
        messages=messages,
        rooms=rooms,
        reactions=reactions,
        hooks=hooks,
        city_presence=city_presence,
        redis=redis,
        activity=activity,
    )
    hooks.message_posted.append(bridge.on_message)
    # City edits and deletes (authored by a city user) and city reactions are queued.
    hooks.message_edited.append(bridge.on_message)
    hooks.message_deleted.append(bridge.on_message)
    hooks.reaction_changed.append(bridge.on_reaction)
    hooks.typing_changed.append(bridge.typing.on_city_typing)
    hooks.room_created.append(bridge.on_room)
    hooks.presence_changed.append(bridge.presence.on_transition)
    bridge.start()
    stack.push_async_callback(bridge.aclose)
    return bridge
