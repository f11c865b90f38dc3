"""Room fanout: this process's sockets per room, and Redis pub/sub between processes.

How a frame travels (see docs/realtime-rooms.md):

* The process where something happened encodes the frame once and calls
  `RoomFanout.publish(room_id, frame)`: the frame is put on the queue of every
  local socket of the room right away, and queued for one `PUBLISH` on the room's
  channel, prefixed with this process's id.
* Every process subscribed to that channel delivers the payload to its own
  sockets, except the publishing process, which skips payloads carrying its own
  id: it already delivered them locally. So each socket gets each frame once,
  local delivery does not depend on Redis, and receivers never re-encode.
* A process subscribes to a room's channel while it has local sockets in the room
  (first socket in: SUBSCRIBE, last one out: UNSUBSCRIBE); no pattern
  subscriptions, so a process never receives traffic for rooms it does not serve.
  The subscriptions go over the process's one pub/sub connection
  (gateway.infra.pubsub.RedisSubscriber), which reconnects and subscribes again
  to every room on its own.
* On a Redis Cluster the same happens over sharded pub/sub: SPUBLISH and
  SSUBSCRIBE, one connection per master (gateway.infra.pubsub_cluster). A room's
  channel is one name, so it hashes to one slot: a room's traffic stays on one
  shard and the rooms spread over all of them.

Each socket is a `ClientSocket` (gateway.realtime.sockets): delivering a frame to
a room never blocks, and a client that falls behind is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from gateway.infra.pubsub import Subscriber
from gateway.infra.pubsub_cluster import make_subscriber
from gateway.infra.redis_clients import is_cluster
from gateway.realtime import metrics
from gateway.realtime.publisher import Publisher
from gateway.realtime.sockets import ClientSocket, outgoing

# Separates the publisher's process id from the frame in a channel payload.
ORIGIN_SEPARATOR = "|"


@dataclass(slots=True)
class _LocalRoom:
    # Insertion-ordered set of the room's sockets on this process.
    sockets: dict[ClientSocket, None] = field(default_factory=dict)
    # user_id -> number of this process's sockets of that user in the room
    users: dict[str, int] = field(default_factory=dict)
    # Resolved once the room's channel subscription is confirmed (or given up on).
    subscribed: asyncio.Future[bool] | None = None


class RoomFanout:
    """Local sockets per room plus the Redis channels that join the processes."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        redis_url: str,
        prefix: str,
        process_id: str,
        on_overflow: Callable[[ClientSocket], None],
        subscribe_timeout: float = 2.0,
        subscriber: Subscriber | None = None,
    ) -> None:
        """`subscriber`: the process's shared pub/sub connection (started and stopped
        by its owner); without one, the fanout runs a subscriber of its own."""
        self.process_id = process_id
        self._channel_prefix = f"{prefix}city:room:"
        self._origin = process_id + ORIGIN_SEPARATOR
        self._rooms: dict[str, _LocalRoom] = {}
        self._on_overflow = on_overflow
        self._subscribe_timeout = subscribe_timeout
        self._owns_subscriber = subscriber is None
        self.subscriber = subscriber or make_subscriber(
            redis_url, f"{prefix}city-fanout-{process_id}", cluster=is_cluster(redis)
        )
        self.publisher = Publisher(redis)

    async def start(self) -> None:
        if self._owns_subscriber:
            await self.subscriber.start()
        await self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()
        if self._owns_subscriber:
            await self.subscriber.stop()
        else:
            for room_id in list(self._rooms):
                self.subscriber.unsubscribe(self.channel(room_id))

    def channel(self, room_id: str) -> str:
        return self._channel_prefix + room_id

    # --- local membership -------------------------------------------------------

    def add(self, sock: ClientSocket, room_id: str) -> tuple[int, asyncio.Future[bool]]:
        """Put a socket in a room; (its user's local socket count, subscription ready)."""
        room = self._rooms.get(room_id)
        if room is None:
            room = self._rooms[room_id] = _LocalRoom()
            room.subscribed = self.subscriber.subscribe(
                self.channel(room_id), self._on_channel_message, self._subscribe_timeout
            )
        room.sockets[sock] = None
        count = room.users[sock.user_id] = room.users.get(sock.user_id, 0) + 1
        assert room.subscribed is not None
        return count, room.subscribed

    def remove(self, sock: ClientSocket, room_id: str) -> int:
        """Take a socket out of a room; the user's remaining local sockets there."""
        room = self._rooms.get(room_id)
        if room is None or room.sockets.pop(sock, False) is False:
            return -1
        left = room.users[sock.user_id] - 1
        if left:
            room.users[sock.user_id] = left
        else:
            del room.users[sock.user_id]
        if not room.sockets:
            del self._rooms[room_id]
            self.subscriber.unsubscribe(self.channel(room_id))
        return left

    def local_counts(self, room_ids: list[str]) -> dict[str, int]:
        return {rid: len(r.users) if (r := self._rooms.get(rid)) else 0 for rid in room_ids}

    def local_members(self) -> list[tuple[str, str]]:
        return [(rid, uid) for rid, room in self._rooms.items() for uid in room.users]

    def sockets(self) -> list[ClientSocket]:
        seen: dict[ClientSocket, None] = {}
        for room in self._rooms.values():
            seen.update(room.sockets)
        return list(seen)

    # --- delivery -----------------------------------------------------------------

    def publish(self, room_id: str, frame: str) -> None:
        """Deliver to this process's sockets now; to the other processes via Redis."""
        self.deliver(room_id, frame)
        self.publisher.publish(self.channel(room_id), self._origin + frame)

    def deliver(self, room_id: str, frame: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        message = outgoing(frame)
        slow: list[ClientSocket] | None = None
        for sock in room.sockets:
            if not sock.offer(message):
                if slow is None:
                    slow = []
                slow.append(sock)
        metrics.FANOUT_FRAMES.inc(len(room.sockets))
        if slow:
            metrics.FANOUT_DROPPED_CLIENTS.inc(len(slow))
            for sock in slow:
                self._on_overflow(sock)

    def _on_channel_message(self, channel: str, payload: str) -> None:
        origin, sep, frame = payload.partition(ORIGIN_SEPARATOR)
        if not sep or origin == self.process_id:
            return  # our own frame (already delivered locally) or not ours to read
        self.deliver(channel[len(self._channel_prefix) :], frame)
