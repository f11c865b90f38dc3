"""Publishing room frames to Redis: one task, in order, pipelined, never blocking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import redis.asyncio as aioredis

from gateway.infra.backoff import Backoff
from gateway.infra.redis_clients import is_cluster

log = logging.getLogger(__name__)


class Publisher:
    """Sends channel payloads to Redis from one task, in order, pipelined.

    Callers never wait for Redis: a post that committed must not fail or stall
    because fanout is unavailable. While Redis is down the queue holds up to
    `limit` payloads (oldest dropped first) and is sent when Redis is back.

    On a Redis Cluster it sends SPUBLISH (sharded pub/sub: each channel goes to its
    slot's master only); the cluster pipeline groups a batch by master.
    """

    def __init__(self, redis: aioredis.Redis, limit: int = 10_000) -> None:
        self._redis = redis
        self._sharded = is_cluster(redis)
        self._limit = limit
        self._queue: deque[tuple[str, str]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(0.1, 2.0)
        self.dropped = 0
        self.failures = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, channel: str, payload: str) -> None:
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("fanout publish queue full; dropped %d frames so far", self.dropped)
        self._queue.append((channel, payload))
        self._idle.clear()
        self._wakeup.set()

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        if self.failures == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), flush_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        batch: list[tuple[str, str]] = []
        while True:
            if not batch:
                if not self._queue:
                    self._wakeup.clear()
                    self._idle.set()
                    await self._wakeup.wait()
                while self._queue and len(batch) < 500:
                    batch.append(self._queue.popleft())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    if self._sharded:
                        for channel, payload in batch:
                            pipe.spublish(channel, payload)
                    else:
                        for channel, payload in batch:
                            pipe.publish(channel, payload)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("fanout publish failed (%d times): %r", self.failures, exc)
                await self._backoff.sleep()
                continue
            if self.failures:
                log.info("fanout publishing restored after %d failures", self.failures)
                self.failures = 0
            self._backoff.reset()
            batch = []
