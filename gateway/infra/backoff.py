"""Exponential back-off with jitter and a cap: the one schedule every retry loop uses.

Retry loops in the service (the Redis subscriber, fanout publishing, the NATS
publisher, the Matrix outbox and bridge start-up) wait `delay(attempt)` between
tries: `base * 2**attempt`, capped at `cap`, scaled by a random factor so that
processes and rooms that failed together do not retry in step. With the default
`floor=0.0` that factor is uniform in [0, 1] ("full jitter"); a loop that must
not retry sooner than half the step passes `floor=0.5`.

`Backoff` keeps the attempt count for a loop; `delay` is the stateless form for a
caller that stores its attempt count elsewhere (the outbox keeps it in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

# 2**_MAX_EXPONENT is far past any cap; bounding it keeps the float finite.
_MAX_EXPONENT = 30


def delay(attempt: int, *, base: float, cap: float, floor: float = 0.0) -> float:
    """The wait before retry number `attempt` (0 = the first retry)."""
    step: float = min(cap, base * 2 ** min(max(attempt, 0), _MAX_EXPONENT))
    return step * random.uniform(floor, 1.0)


class Backoff:
    """A retry loop's schedule: `await backoff.sleep()` after a failure, `reset()` after a success.

    Also an endless iterator of delays (`for wait in Backoff(...)`).
    """

    __slots__ = ("attempt", "base", "cap", "floor")

    def __init__(self, base: float, cap: float, *, floor: float = 0.0) -> None:
        if base <= 0 or cap < base or not 0.0 <= floor <= 1.0:
            raise ValueError("need 0 < base <= cap and 0 <= floor <= 1")
        self.base = base
        self.cap = cap
        self.floor = floor
        self.attempt = 0

    def next_delay(self) -> float:
        wait = delay(self.attempt, base=self.base, cap=self.cap, floor=self.floor)
        self.attempt += 1
        return wait

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0

    def __iter__(self) -> Iterator[float]:
        return self

    def __next__(self) -> float:
        return self.next_delay()
