"""Small process and port helpers shared by the dev stack's services."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urlsplit, urlunsplit

# Like synapse.py's launcher: the child asks Linux to SIGTERM it when the dev command
# dies (even by SIGKILL), then execs the real program. A crashed `make dev` must not
# leave a gateway holding :8080. prctl(PR_SET_PDEATHSIG=1, SIGTERM) survives exec.
_LAUNCHER = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (AttributeError, OSError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent exited before start")
os.execvp(sys.argv[2], sys.argv[2:])
"""


class DevError(Exception):
    """Something the newcomer can fix; the message says what (printed as is)."""


class ChildProcess:
    """A server process this one started (`_proc`, once started)."""

    _proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None


class StopOnExit:
    """`async with x:` stops `x` when the block ends (entering it starts nothing)."""

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on host:port (TIME_WAIT leftovers do not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As uvicorn and Synapse do: a port with only TIME_WAIT connections is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def require_free_port(port: int, what: str, how: str) -> None:
    if port_in_use(port):
        raise DevError(
            f"port {port} is already in use, so {what} cannot listen there.\n"
            f"  Find the process: ss -ltnp 'sport = :{port}'   (or: lsof -i :{port})\n"
            f"  Stop it, or choose another port: {how}"
        )


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "")


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | IO[bytes] | None = None,
) -> asyncio.subprocess.Process:
    """Start `argv` in its own session, terminated by Linux if we die.

    Own session: Ctrl-C in the terminal reaches only the dev command, which then
    stops its children in order (gateway first, databases last).
    """
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LAUNCHER,
        str(os.getpid()),
        *argv,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.STDOUT if stdout is not None else None,
        start_new_session=True,
    )


async def terminate(proc: asyncio.subprocess.Process, grace: float = 15.0) -> None:
    """SIGTERM the child's process group, wait up to `grace` s, then SIGKILL."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def say(message: str) -> None:
    print(f"city-dev: {message}", flush=True)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def stopping(name: str, stop: Any) -> Any:
    async def run() -> None:
        say(f"stopping {name}")
        try:
            await stop()
        except Exception as exc:
            say(f"stopping {name} failed: {exc}")

    return run
