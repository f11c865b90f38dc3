"""Real gateway servers for tests: in this process (uvicorn task) or as OS processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app.main import create_app
from gateway.core.auth import mint_token
from gateway.infra.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await asyncio.sleep(interval)


class Gateway:
    """A running gateway reached over real HTTP."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30)

    def token(self, user_id: str, name: str | None = None) -> str:
        return mint_token(self.settings.jwt_secret, user_id, name)

    def auth(self, user_id: str, name: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, name)}"}

    @property
    def runtime(self) -> Any:
        """The in-process runtime (only for InProcessGateway)."""
        raise NotImplementedError


class InProcessGateway(Gateway):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, free_port())
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            ws_max_size=settings.ws_max_frame_bytes,
            # Compression roughly doubles memory and send cost per socket; chat frames
            # are small, and one room message goes to thousands of sockets.
            ws_per_message_deflate=False,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def start(self) -> InProcessGateway:
        self._task = asyncio.create_task(self.server.serve())
        await wait_until(lambda: self.server.started or self._task.done(), timeout=30)  # type: ignore[union-attr]
        if self._task.done():
            self._task.result()
            raise RuntimeError("gateway failed to start")
        return self

    async def stop(self) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 15)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build the same Settings."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class GatewayProcess(Gateway):
    """`city-gateway serve` as a separate OS process (for multi-process tests)."""

    def __init__(
        self,
        settings: Settings,
        extra_env: Mapping[str, str] | None = None,
        workers: int | None = None,
    ) -> None:
        super().__init__(settings, free_port())
        self.extra_env = dict(extra_env or {})
        self.workers = workers  # `serve --workers N` (uvicorn's supervisor + N workers)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"city-gateway-{self.port}.log"

    async def start(self) -> GatewayProcess:
        env = {**os.environ, **settings_env(self.settings), **self.extra_env}
        env["LOG_FORMAT"] = "human"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.app.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *(["--workers", str(self.workers)] if self.workers is not None else []),
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        async def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                return (await self.http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, timeout=60, interval=0.1)
        return self

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        await self.http.aclose()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, 5)
        self._log.close()

    def kill(self) -> None:
        """Die without any clean-up, like a crashed process."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
