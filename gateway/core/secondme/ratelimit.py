"""Per-user rate limit for Second Me, shared by every process through Redis.

A sliding log: each allowed call is a member of a sorted set scored by Redis's own
clock, and a call is allowed while fewer than `limit` calls fall inside the last
`window` seconds. It is exact (no burst of 2x at a window boundary, as a fixed
window allows) and small (at most `limit` members per user). Refused calls are not
recorded, so a client hammering the endpoint gets back in as soon as its oldest
call leaves the window.

Redis being down must not take Second Me down with it: the check then allows the
call and logs, since the limit protects Agents Core's budget, not correctness.

`OncePerWindow` answers "is this the first time in the window?" for one subject,
also across processes: Second Me posts one "too many requests" notice per user per
window with it, and stays silent for the refusals after that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] the user's log; ARGV: limit, window ms, a unique member suffix.
# Returns {1, 0} when allowed (and recorded), {0, ms until a slot frees} otherwise.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""

# A Redis that hangs must not hang the request either.
_REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: int = 0


class SlidingWindowLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        key_prefix: str,
        limit: int,
        window_seconds: float = 60.0,
    ) -> None:
        self._redis = redis
        self._key_prefix = key_prefix
        self._limit = limit
        self._window_ms = int(window_seconds * 1000)
        self._script = redis.register_script(_SLIDING_LOG)

    async def check(self, subject: str) -> RateDecision:
        """Record one call by `subject` if it is allowed."""
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT_SECONDS):
                allowed, wait_ms = await self._script(
                    keys=[f"{self._key_prefix}{subject}"],
                    args=[self._limit, self._window_ms, secrets.token_hex(4)],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("rate limit check skipped, Redis unavailable: %s", type(exc).__name__)
            return RateDecision(True)
        if int(allowed):
            return RateDecision(True)
        return RateDecision(False, max(1, math.ceil(int(wait_ms) / 1000)))


class OncePerWindow:
    """True for the first call per subject in each window, False until it ends.

    One `SET NX PX`: atomic, so of several processes asking at once exactly one gets
    True. With Redis unavailable it answers False: what it gates is an extra message
    (a notice), and silence is the safe side of "at most one".
    """

    def __init__(self, redis: aioredis.Redis, *, key_prefix: str, window_seconds: float) -> None:
        self._redis = redis
        self._key_prefix = key_prefix
        self._window_ms = max(1, int(window_seconds * 1000))

    async def first(self, subject: str) -> bool:
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT_SECONDS):
                created = await self._redis.set(
                    f"{self._key_prefix}{subject}", "1", nx=True, px=self._window_ms
                )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("once-per-window check skipped, Redis unavailable: %s", type(exc).__name__)
            return False
        return bool(created)
