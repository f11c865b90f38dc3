"""One WebSocket's outgoing side: a bounded queue drained by one writer task.

Sockets are written to by one writer task each, from a bounded queue: delivering a
frame to a room is a loop of non-blocking appends, a slow client never stalls the
room, and one that falls `queue_frames` behind is closed with 1013. Room fanout
(gateway.realtime.fanout) and presence sockets both deliver through `ClientSocket`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

log = logging.getLogger(__name__)

# An ASGI `websocket.send` message, built once per frame and shared by every socket.
Outgoing = dict[str, Any]
SendMessage = Callable[[Outgoing], Coroutine[Any, Any, None]]
CloseSocket = Callable[[int, str], Awaitable[None]]

CLOSE_TOO_SLOW = 1013
CLOSE_GOING_AWAY = 1001


def outgoing(frame: str) -> Outgoing:
    return {"type": "websocket.send", "text": frame}


class ClientSocket:
    """The outgoing side of one WebSocket: a bounded queue drained by one writer task.

    `offer` never blocks. The writer is the only coroutine that writes to the
    socket, so frames leave in the order they were offered, and a client that does
    not read blocks only its own writer.
    """

    __slots__ = (
        "_close",
        "_inflight",
        "_limit",
        "_queue",
        "_send",
        "_wakeup",
        "_writer",
        "close_code",
        "close_reason",
        "done",
        "rooms",
        "user_id",
    )

    def __init__(self, user_id: str, send: SendMessage, close: CloseSocket, limit: int) -> None:
        self.user_id = user_id
        # Rooms this socket follows (kept by the realtime hub).
        self.rooms: set[str] = set()
        self._send = send
        self._close = close
        self._limit = limit
        self._queue: deque[Outgoing] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # A send started by `offer` that suspended; the writer awaits the rest of it.
        self._inflight: _Resume | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        # Set when the writer has stopped: the close frame went out or the peer is gone.
        self.done = False

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def closing(self) -> bool:
        return self.close_code is not None or self.done

    def offer(self, message: Outgoing) -> bool:
        """Queue a frame; False only when the queue is full (the caller drops us)."""
        if self.close_code is not None or self.done:
            return True  # going away: frames are discarded, nothing to report
        wakeup = self._wakeup
        if wakeup is not None and not self._queue and self._inflight is None:
            # The writer is parked with nothing pending: write right here. An ASGI send
            # to a writable socket completes without suspending, which saves a task
            # switch per socket per frame; if it does suspend, the writer finishes it.
            self._write_now(message)
            return True
        if len(self._queue) >= self._limit:
            return False
        self._queue.append(message)
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return True

    def _write_now(self, message: Outgoing) -> None:
        coro = self._send(message)
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the peer is gone; the reader will notice too
            log.debug("websocket write for %s failed: %r", self.user_id, exc)
            self.done = True
            self._queue.clear()
            wakeup = self._wakeup
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)
            return
        self._inflight = _Resume(coro, pending)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to close the socket after the frame it is writing, if any."""
        if self.close_code is not None or self.done:
            return
        self.close_code = code
        self.close_reason = reason
        self._queue.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def wait_done(self, timeout: float) -> bool:
        writer = self._writer
        if writer is None or writer.done():
            return True
        done, _ = await asyncio.wait({writer}, timeout=timeout)
        return bool(done)

    def stop(self) -> None:
        """The connection is over: stop the writer without writing anything more."""
        self.done = True
        self._queue.clear()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if self._inflight is not None:
                    await self._inflight
                    self._inflight = None
                if self.done:
                    return
                while self._queue and self.close_code is None:
                    await self._send(self._queue.popleft())
                if self.close_code is not None:
                    await self._close(self.close_code, self.close_reason)
                    return
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-write; the reader notices too
            log.debug("websocket writer for %s stopped: %r", self.user_id, exc)
        finally:
            self.done = True
            self._queue.clear()


class _Resume:
    """Awaits the rest of a coroutine that was started by hand and suspended.

    The coroutine yielded `pending` (a future, or None for a bare yield); awaiting
    this object hands that to the awaiting task and then keeps driving the
    coroutine exactly as the task itself would have.
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, None, None]:
        pending = self._pending
        while True:
            try:
                yield pending
            except BaseException as exc:
                try:
                    pending = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                pending = self._coro.send(None)
            except StopIteration:
                return
