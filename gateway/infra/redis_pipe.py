"""One Redis connection shared by concurrent callers, with automatic pipelining.

Why not redis-py here: the presence heartbeat is the hottest endpoint and is one
EVALSHA. redis-py spends ~250-300 µs of CPU per command (pool checkout, retry
wrapper, a send and a receive syscall per command); that alone is the cost of a
whole `/healthz` request. This connection writes every command issued in one
event-loop iteration with a single send, and matches replies to callers in order
(Redis answers a connection's commands in order), which brings a command to about
25 µs of CPU under load (measured in bench/heartbeat.py's setting).

Deliberately small: RESP2 only, commands whose replies are integers, strings,
errors and arrays of those (EVALSHA, PUBLISH, SCRIPT LOAD, PING). Errors are
redis-py's exception types, so callers handle one family of errors. A lost
connection fails the commands in flight with `ConnectionError`; the next command
reconnects. A connection that stops answering for `stall_seconds` is dropped and its
callers get `ConnectionError`: that is every caller's timeout, kept by one timer
per connection instead of one per command.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    RedisError,
    ResponseError,
)

Reply = Any  # int | str | None | RedisError | list[Reply]


def encode_command(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif kind is bytes:
            data = arg
        elif kind is float:
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {kind.__name__} to Redis")
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


def _error(message: str) -> RedisError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS")):
        return AuthenticationError(message)
    return ResponseError(message)


def parse_reply(buf: bytearray, pos: int) -> tuple[Reply, int] | None:
    """One complete reply starting at `pos` and the position after it, or None."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            return None
        return bytes(buf[pos : pos + size]).decode("utf-8", "replace"), pos + size + 2
    if kind == 0x3A:  # : integer
        return int(line), pos
    if kind == 0x2A:  # * array
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Reply] = []
        for _ in range(count):
            parsed = parse_reply(buf, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return items, pos
    if kind == 0x2B:  # + simple string
        return line.decode("utf-8", "replace"), pos
    if kind == 0x2D:  # - error
        return _error(line.decode("utf-8", "replace")), pos
    raise ConnectionError(f"unexpected Redis reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, stall_seconds: float) -> None:
        self._loop = loop
        self._stall = stall_seconds
        self._transport: asyncio.Transport | None = None
        self._pending: deque[asyncio.Future[Reply]] = deque()
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        # When the oldest pending command was sent or the last reply arrived.
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes) -> asyncio.Future[Reply]:
        if self.closed:
            raise ConnectionError("Redis connection closed")
        if not self._pending:
            self._progress = self._loop.time()
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._stall, self._check_stall)
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending.append(future)
        return future

    def _check_stall(self) -> None:
        """One timer per connection (not per command) bounds every caller's wait."""
        self._watchdog = None
        if self.closed or not self._pending:
            return
        waited = self._loop.time() - self._progress
        if waited >= self._stall:
            self.abort(ConnectionError("Redis stopped answering"))
        else:
            self._watchdog = self._loop.call_later(self._stall - waited, self._check_stall)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        pending = self._pending
        try:
            while pos < len(buf):
                parsed = parse_reply(buf, pos)
                if parsed is None:
                    break
                reply, pos = parsed
                if not pending:
                    raise ConnectionError("Redis sent a reply nobody asked for")
                future = pending.popleft()
                if not future.done():  # a caller that timed out is skipped
                    if isinstance(reply, RedisError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (ConnectionError, ValueError) as exc:
            self.abort(ConnectionError(f"bad Redis reply: {exc}"))
            return
        del buf[:pos]
        self._progress = self._loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis connection lost: {exc!r}" if exc else "Redis closed"))

    def abort(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._out.clear()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(exc)


class RedisPipe:
    """Shared pipelined connection; `await pipe.call("PUBLISH", channel, payload)`."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 1.0,
        stall_seconds: float = 5.0,
        address: tuple[str, int] | None = None,
    ) -> None:
        """`address`: connect there instead of the URL's host and port, with the URL's
        credentials (a cluster node; gateway.infra.redis_cluster_pipe)."""
        self._options = parse_url(url)
        if address is not None:
            self._options = {**self._options, "host": address[0], "port": address[1]}
            self._options.pop("path", None)
            self._options.pop("db", None)  # a cluster has database 0 only
        self._connect_timeout = connect_timeout
        self._stall = stall_seconds
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        # Script sources by SHA, so NOSCRIPT (a restarted Redis) loads and retries.
        self._scripts: dict[str, str] = {}

    def submit(self, *args: Any) -> asyncio.Future[Reply] | None:
        """Send now and return the reply's future, or None when not connected.

        The hot path awaits the future itself: one frame less on every suspension
        than `await call(...)`, which connects first when needed.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            return None
        return protocol.send(encode_command(args))

    async def call(self, *args: Any) -> Reply:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.send(encode_command(args))

    async def call_many(self, commands: list[tuple[Any, ...]]) -> list[Reply]:
        """Several commands in one write; raises the first error after all answered."""
        if not commands:
            return []
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        futures: list[asyncio.Future[Reply]] = []
        try:
            for args in commands:
                futures.append(protocol.send(encode_command(args)))
        except BaseException:
            for future in futures:
                future.cancel()  # their replies are skipped when they come
            raise
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def evalsha(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Reply:
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.call("SCRIPT", "LOAD", source)
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and not protocol.closed:
            protocol.abort(ConnectionError("Redis connection closed by us"))

    async def _connect(self) -> _Protocol:
        # One connection attempt at a time; concurrent callers wait for it.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        stall = self._stall

        def factory() -> _Protocol:
            return _Protocol(loop, stall)

        try:
            async with asyncio.timeout(self._connect_timeout):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(factory, options["path"])
                else:
                    tls = ssl.create_default_context()
                    use_tls = options.get("connection_class") is SSLConnection
                    _, protocol = await loop.create_connection(
                        factory,
                        options.get("host", "localhost"),
                        options.get("port", 6379),
                        ssl=tls if use_tls else None,
                    )
                try:
                    await self._handshake(protocol)
                except BaseException:
                    protocol.abort(ConnectionError("Redis handshake failed"))
                    raise
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot connect to Redis: {exc!r}") from None
        self._protocol = protocol
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        options = self._options
        if options.get("password") is not None:
            auth = [options["password"]]
            if options.get("username"):
                auth.insert(0, options["username"])
            await protocol.send(encode_command(("AUTH", *auth)))
        if options.get("db"):
            await protocol.send(encode_command(("SELECT", int(options["db"]))))
