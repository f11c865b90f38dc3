"""The per-user write limits of SPEC §12: one token bucket, shared by every process.

A bucket holds up to `burst` tokens and refills at `rate_per_second`; each
allowed call takes `cost` tokens. The whole step — refill, take, remember — is one
Lua script on Redis, timed by Redis's own clock (`TIME`), so processes with skewed
clocks share one exact budget and no two calls can race between read and write.
State is a 2-field hash per subject that expires once it would be full again, so
idle users cost nothing.

    bucket = TokenBucket(redis, prefix=..., name="messages", rate_per_second=10, burst=30)
    decision = await bucket.take(user_id)
    if not decision.allowed:
        raise decision.error("too many messages")  # 429 rate_limited + Retry-After

A refused call takes nothing, so a client retrying too fast gets back in as soon
as one token has refilled (`retry_after_seconds`). `refund` gives a token back for
work that turned out not to happen (an idempotent retry, a taken slug).

Redis unavailable: the limit is skipped (logged, and not retried for
`_OPEN_CIRCUIT_SECONDS` so a dead Redis does not add a timeout to every call). The
limits protect capacity, not correctness; posts must keep working through a
Redis outage (issue 9: "Redis killed for 20 s → every post still stored").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.core.errors import AppError
from gateway.core.metrics import RATE_LIMITED

log = logging.getLogger(__name__)

# KEYS[1] the subject's bucket (hash: t = tokens, ms = when t was computed).
# ARGV: rate (tokens per ms), burst, cost. Returns {allowed 1|0, ms until `cost`
# tokens are there (0 when allowed)}. A negative cost refunds (capped at burst).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ms')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
elseif now > last then
  tokens = math.min(burst, tokens + (now - last) * rate)
end
local allowed, wait = 1, 0
if tokens >= cost then
  tokens = math.min(burst, tokens - cost)
else
  allowed = 0
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {allowed, wait}
"""

# A Redis that hangs must not hang the write it guards for long.
_REDIS_TIMEOUT_SECONDS = 0.5
# After a failure, calls skip the limit for this long instead of each waiting.
_OPEN_CIRCUIT_SECONDS = 1.0
# Checks of one bucket in flight at once. The Redis pool is shared and bounded (100
# connections by default) and answers "too many connections" instead of waiting, so
# a flood of concurrent posts would otherwise fail checks open; past this they queue.
_MAX_IN_FLIGHT = 32


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    # Seconds until the refused call would be allowed (0 when allowed).
    retry_after_seconds: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` is whole seconds; never 0 for a refusal."""
        return str(max(1, math.ceil(self.retry_after_seconds)))

    def error(self, message: str) -> AppError:
        """429 `rate_limited` with Retry-After (an `error` frame on sockets)."""
        return AppError(
            429, "rate_limited", message, headers={"Retry-After": self.retry_after_header}
        )


ALLOWED = RateDecision(True)


class TokenBucket:
    """One named limit (`messages`, `rooms`, ...) applied per subject (a user id)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        name: str,
        rate_per_second: float,
        burst: int,
    ) -> None:
        self.name = name
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._redis = redis
        self._key_prefix = f"{prefix}city:rl:{name}:"
        self._rate_per_ms = repr(rate_per_second / 1000)
        self._script = redis.register_script(_TAKE)
        self._skip_until = 0.0
        self._in_flight = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._refused = RATE_LIMITED.labels(name)

    async def take(self, subject: str, cost: int = 1) -> RateDecision:
        """Take `cost` tokens of `subject`'s bucket if it has them."""
        result = await self._run(subject, cost)
        if result is None or int(result[0]):
            return ALLOWED
        self._refused.inc()
        return RateDecision(False, int(result[1]) / 1000)

    async def refund(self, subject: str, cost: int = 1) -> None:
        """Give back tokens taken for work that did not happen (never above burst)."""
        await self._run(subject, -cost)

    async def _run(self, subject: str, cost: int) -> list[int] | None:
        if self._skip_until and time.monotonic() < self._skip_until:
            return None
        try:
            async with self._in_flight, asyncio.timeout(_REDIS_TIMEOUT_SECONDS):
                result: list[int] = await self._script(
                    keys=[self._key_prefix + subject],
                    args=[self._rate_per_ms, self.burst, cost],
                )
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._skip_until:
                log.warning(
                    "rate limit %s skipped, Redis unavailable: %s", self.name, type(exc).__name__
                )
            self._skip_until = time.monotonic() + _OPEN_CIRCUIT_SECONDS
            return None
        if self._skip_until:
            log.info("rate limit %s applies again", self.name)
            self._skip_until = 0.0
        return result
