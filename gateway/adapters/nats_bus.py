"""Optional: city events published to NATS JetStream for other DAARION services.

With `NATS_URL` set, every committed room message, agent reply, edit, delete, new room
and presence transition is also published to the JetStream stream `NATS_STREAM` (default `CITY`,
subjects `{NATS_SUBJECT_PREFIX}.>`, default `city.>`):

| hook                | subject                     |
|---------------------|-----------------------------|
| message (by a user) | `city.room_message`         |
| message (an agent)  | `city.agent_reply`          |
| message edited      | `city.room_message_edited`  |
| message deleted     | `city.room_message_deleted` |
| room created        | `city.room_created`         |
| presence transition | `city.presence.update`      |

Best effort by design: the city API never waits for NATS. Listeners only append to a
bounded in-memory queue; one background task connects (lazily, retrying forever),
creates the stream if it is missing, and publishes in order with JetStream acks.
While NATS is down or slow the queue grows up to `NATS_QUEUE_MAX` events, then the
oldest are dropped (`city_nats_dropped_total`); a process that exits with events
still queued loses them. Consumers that need every message read PostgreSQL
(`city_feed_events`); NATS is for reacting quickly. Each event carries a
`Nats-Msg-Id` header (the city id), so a publish retried after a lost ack is stored
once (within JetStream's duplicate window).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.adapters import metrics
from gateway.infra.backoff import Backoff
from gateway.infra.jsonio import dumps

if TYPE_CHECKING:
    from gateway.core.events import CityHooks
    from gateway.core.models import Message, Room
    from gateway.infra.settings import Settings

log = logging.getLogger(__name__)

_PUBLISH_TIMEOUT_SECONDS = 5.0
_CONNECT_TIMEOUT_SECONDS = 2.0
_RETRY_MAX_SECONDS = 10.0
# On shutdown, how long queued events may still be flushed before they are dropped.
_FLUSH_ON_CLOSE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class BusEvent:
    subject: str
    msg_id: str  # JetStream de-duplication key
    data: bytes


class NatsBus:
    """A bounded queue of city events and the task that publishes them."""

    def __init__(self, url: str, *, stream: str, subject_prefix: str, queue_max: int) -> None:
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix
        self.queue_max = queue_max
        self._queue: deque[BusEvent] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued or in flight
        self._idle.set()
        self._nc: Any = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.published = 0  # acknowledged by JetStream (for tests and metrics)
        self.dropped = 0

    # --- producers (never block, never raise) -----------------------------------------
    def publish(self, name: str, msg_id: str, payload: dict[str, Any]) -> None:
        """Queue `payload` for `{prefix}.{name}`; drops the oldest event when full."""
        event = BusEvent(f"{self.prefix}.{name}", msg_id, dumps({"event": name, **payload}))
        if len(self._queue) >= self.queue_max:
            self._queue.popleft()
            self.dropped += 1
            metrics.NATS_DROPPED.inc()
        self._queue.append(event)
        metrics.NATS_QUEUE.set(len(self._queue))
        self._idle.clear()
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def on_message(self, message: Message) -> None:
        name = "agent_reply" if message.author_agent_id else "room_message"
        self.publish(
            name,
            message.id,
            {
                "room_id": message.room_id,
                "source": "matrix" if message.author_matrix_id else "city",
                "message": message.as_json(),
            },
        )

    async def on_message_edited(self, message: Message) -> None:
        # Each edit is its own event: the id carries the time, not only the message.
        self.publish(
            "room_message_edited",
            f"edited:{message.id}:{datetime.now(UTC).timestamp():.6f}",
            {"room_id": message.room_id, "message": message.as_json()},
        )

    async def on_message_deleted(self, message: Message) -> None:
        self.publish(
            "room_message_deleted",
            f"deleted:{message.id}",
            {"room_id": message.room_id, "message_id": message.id},
        )

    async def on_room(self, room: Room) -> None:
        self.publish("room_created", f"room:{room.id}", {"room": room.as_json()})

    async def on_presence(self, user_id: str, previous: str, status: str, ago: int) -> None:
        now = datetime.now(UTC)
        self.publish(
            "presence.update",
            f"presence:{user_id}:{now.timestamp():.6f}:{status}",
            {
                "user_id": user_id,
                "previous": previous,
                "status": status,
                "last_active_ago": ago,
                "at": now,
            },
        )

    # --- the publisher ------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("nats_bus")

    async def _run(self) -> None:
        try:
            await self._publish_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("NATS publisher stopped; city events are no longer published")

    async def _publish_forever(self) -> None:
        js = await self._connect()
        await self._ensure_stream(js)
        backoff = Backoff(0.2, _RETRY_MAX_SECONDS)
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue.popleft()
            try:
                await js.publish(
                    event.subject,
                    event.data,
                    timeout=_PUBLISH_TIMEOUT_SECONDS,
                    headers={"Nats-Msg-Id": event.msg_id},
                )
            except Exception as exc:
                self._requeue(event)
                metrics.NATS_PUBLISH_FAILURES.inc()
                log.warning("NATS publish to %s failed (retrying): %r", event.subject, exc)
                if _is_no_stream(exc):
                    await self._ensure_stream(js)
                await backoff.sleep()
                continue
            backoff.reset()
            self.published += 1
            metrics.NATS_PUBLISHED.inc()
            metrics.NATS_QUEUE.set(len(self._queue))
            if not self._queue:
                self._idle.set()

    def _requeue(self, event: BusEvent) -> None:
        """Put a failed event back at the head, unless newer ones filled the queue."""
        if len(self._queue) < self.queue_max:
            self._queue.appendleft(event)
        else:
            self.dropped += 1
            metrics.NATS_DROPPED.inc()

    async def _connect(self) -> Any:
        import nats

        warned = False

        async def on_error(exc: Exception) -> None:
            nonlocal warned
            if not warned:  # the client retries every 2 s: say it once per outage
                warned = True
                log.warning("NATS at %s unavailable (events are queued): %r", self.url, exc)

        async def on_disconnected() -> None:
            self.connected = False
            metrics.NATS_CONNECTED.set(0)

        async def on_reconnected() -> None:
            nonlocal warned
            warned = False
            self.connected = True
            metrics.NATS_CONNECTED.set(1)
            log.info("NATS reconnected")
            self._wake.set()

        # max_reconnect_attempts=-1 also makes the first connect retry until it works.
        self._nc = await nats.connect(
            self.url,
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
            reconnect_time_wait=2,
            max_reconnect_attempts=-1,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            name="city-gateway",
        )
        self.connected = True
        metrics.NATS_CONNECTED.set(1)
        log.info("NATS connected at %s; publishing city events to stream %s", self.url, self.stream)
        return self._nc.jetstream(timeout=_PUBLISH_TIMEOUT_SECONDS)

    async def _ensure_stream(self, js: Any) -> None:
        """Create the stream if missing; an existing one is left as its operator set it."""
        from nats.js.errors import NotFoundError

        backoff = Backoff(0.5, _RETRY_MAX_SECONDS)
        while True:
            try:
                try:
                    await js.stream_info(self.stream)
                except NotFoundError:
                    await js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
                    log.info("created JetStream stream %s (%s.>)", self.stream, self.prefix)
                return
            except Exception as exc:
                log.warning("JetStream stream %s not usable yet: %r", self.stream, exc)
                await backoff.sleep()

    async def aclose(self) -> None:
        """Give queued events a moment to go out, then stop and disconnect."""
        if self._task is not None and not self._task.done() and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_FLUSH_ON_CLOSE_SECONDS):
                    await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._queue:
            log.warning("NATS: %d queued city event(s) not published at exit", len(self._queue))
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        metrics.NATS_CONNECTED.set(0)


def _is_no_stream(exc: Exception) -> bool:
    from nats.errors import NoRespondersError

    return isinstance(exc, NoRespondersError)


def build_bus(settings: Settings) -> NatsBus | None:
    if not settings.nats_url:
        return None
    return NatsBus(
        settings.nats_url,
        stream=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        queue_max=settings.nats_queue_max,
    )


def start_nats_bus(settings: Settings, hooks: CityHooks, stack: AsyncExitStack) -> NatsBus | None:
    """Starter (after the other listeners): publishes what the hooks announce (NATS_URL)."""
    bus = build_bus(settings)
    if bus is None:
        return None
    hooks.message_posted.append(bus.on_message)
    hooks.message_edited.append(bus.on_message_edited)
    hooks.message_deleted.append(bus.on_message_deleted)
    hooks.room_created.append(bus.on_room)
    hooks.presence_changed.append(bus.on_presence)
    bus.start()
    stack.push_async_callback(bus.aclose)
    return bus
