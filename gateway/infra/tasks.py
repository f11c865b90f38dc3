"""Background work owned by an object: a task group, and listeners that must not fail.

`TaskGroup` replaces the hand-kept `set[asyncio.Task]` + `add_done_callback(discard)`
pattern: it holds a strong reference to each task until it finishes (the event loop
keeps only weak ones), logs a task that failed (nobody awaits it, so its exception
would otherwise surface only as "Task exception was never retrieved"), and on
`aclose()` cancels what is still running and waits for it. Unlike
`asyncio.TaskGroup`, one failing task does not cancel the others: these are
independent jobs (a slow client's clean-up, an UNSUBSCRIBE, a reply).

`call_safely` runs one listener of an after-commit notification: a failure is
logged and never reaches the code that already committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskGroup:
    """A set of background tasks, logged when they fail, cancelled on `aclose()`."""

    def __init__(self, name: str, logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or log
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run `coro` in the background; the group keeps it until it finishes."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error(
                "%s: background task %s failed",
                self.name,
                task.get_name(),
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    async def wait(self) -> None:
        """Wait until no task is running (tasks spawned meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them to end."""
        self.closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def call_safely(
    listener: Callable[..., Awaitable[None]],
    *args: Any,
    logger: logging.Logger | None = None,
) -> None:
    """Await `listener(*args)`; an exception is logged (with `logger`), never raised."""
    try:
        await listener(*args)
    except Exception:
        (logger or log).exception("listener %r failed", listener)
