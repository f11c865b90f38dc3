"""The task-group helper and `call_safely` (gateway/infra/tasks.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.infra.tasks import TaskGroup, call_safely


async def test_tasks_are_kept_until_done() -> None:
    group = TaskGroup("test")
    release = asyncio.Event()

    async def job() -> int:
        await release.wait()
        return 7

    task = group.spawn(job(), name="job")
    assert len(group) == 1 and group
    release.set()
    assert await task == 7
    await asyncio.sleep(0)
    assert len(group) == 0 and not group


async def test_failures_are_logged_and_do_not_touch_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = TaskGroup("test-group")
    release = asyncio.Event()

    async def fails() -> None:
        raise RuntimeError("boom")

    async def waits() -> None:
        await release.wait()

    group.spawn(fails(), name="failing-job")
    survivor = group.spawn(waits())
    with caplog.at_level(logging.ERROR):
        await asyncio.sleep(0.01)
    assert any(
        "test-group" in r.getMessage() and "failing-job" in r.getMessage() and r.exc_info
        for r in caplog.records
    )
    assert not survivor.done() and len(group) == 1
    release.set()
    await group.wait()
    assert survivor.done() and not survivor.cancelled()


async def test_aclose_cancels_and_awaits(caplog: pytest.LogCaptureFixture) -> None:
    group = TaskGroup("test")
    cleaned: list[str] = []

    async def forever(tag: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits
            cleaned.append(tag)

    tasks = [group.spawn(forever(t)) for t in "abc"]
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        await group.aclose()
    assert sorted(cleaned) == ["a", "b", "c"]
    assert all(t.cancelled() for t in tasks) and len(group) == 0 and group.closed
    assert not caplog.records  # cancellation is not a failure


async def test_wait_covers_tasks_spawned_meanwhile() -> None:
    group = TaskGroup("test")
    done: list[int] = []

    async def child() -> None:
        await asyncio.sleep(0.01)
        done.append(2)

    async def parent() -> None:
        group.spawn(child())
        done.append(1)

    group.spawn(parent())
    await group.wait()
    assert done == [1, 2]


async def test_call_safely_logs_and_swallows(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    async def ok(value: int) -> None:
        seen.append(value)

    async def broken(value: int) -> None:
        raise ValueError(value)

    mine = logging.getLogger("tests.mine")
    with caplog.at_level(logging.ERROR):
        await call_safely(ok, 1)
        await call_safely(broken, 2, logger=mine)
    assert seen == [1]
    [record] = caplog.records
    assert record.name == "tests.mine" and "failed" in record.getMessage() and record.exc_info
