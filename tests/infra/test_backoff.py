"""The one back-off schedule (gateway/infra/backoff.py)."""

from __future__ import annotations

import itertools
import time

import pytest

from gateway.infra.backoff import Backoff, delay


def test_delay_doubles_up_to_the_cap_with_full_jitter() -> None:
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (10_000, 30.0)]:
        samples = [delay(attempt, base=0.5, cap=30.0) for _ in range(300)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not around one value.
        assert min(samples) < ceiling * 0.2 and max(samples) > ceiling * 0.8


def test_floor_keeps_a_minimum_share_of_the_step() -> None:
    samples = [delay(3, base=0.5, cap=30.0, floor=0.5) for _ in range(300)]
    assert all(2.0 <= s <= 4.0 for s in samples)
    assert delay(-5, base=0.5, cap=30.0, floor=1.0) == 0.5


def test_backoff_counts_attempts_and_resets() -> None:
    b = Backoff(0.1, 2.0, floor=1.0)  # floor 1: no randomness, easy to read
    assert list(itertools.islice(b, 7)) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert b.attempt == 7
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)


async def test_backoff_sleeps() -> None:
    b = Backoff(0.05, 0.05, floor=1.0)
    started = time.monotonic()
    await b.sleep()
    assert time.monotonic() - started >= 0.04
    assert b.attempt == 1


@pytest.mark.parametrize(("base", "cap", "floor"), [(0, 1, 0), (2, 1, 0), (1, 2, 1.5)])
def test_rejects_nonsense(base: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, cap, floor=floor)
