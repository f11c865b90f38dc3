"""Starting the dev stack's parts in order, each stopped in reverse on exit.

PostgreSQL and Redis are the user's when `DATABASE_URL` / `REDIS_URL` answer, else
private ones from the installed binaries (data in `.city-dev/`); then migrations,
Synapse (from PyPI, SQLite) with our appservice, the gateway as a child process,
and a demo Matrix account in `#city_general`. Only what was started here is stopped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from devstack import procs
from devstack.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    DevOptions,
    DevState,
    check_settings,
    effective_env,
    user_config,
    write_env_file,
)
from devstack.procs import (
    DevError,
    answers,
    host_port,
    is_local,
    redact,
    require_free_port,
    say,
    stopping,
)
from devstack.synapse import free_port
from devstack.webapp import build_web_app

DEMO_MATRIX_USER = "demo"
READY_TIMEOUT_SECONDS = 120.0


@dataclass
class Stack:
    """What is running, for the ready block and the watchdog."""

    options: DevOptions
    state: DevState
    env: dict[str, str]
    database_note: str = ""
    redis_note: str = ""
    gateway: asyncio.subprocess.Process | None = None
    synapse: Any = None  # SynapseProcess
    private_redis: Any = None  # PrivateRedis
    matrix_user_id: str = ""
    joined: bool = False
    web_built: bool = False  # web/app/dist is there: the gateway serves /app/
    started: list[str] = field(default_factory=list)  # "name pid" of what we started


async def start_all(opts: DevOptions, exit_stack: AsyncExitStack) -> Stack:
    """Start everything; each part registers its stop on `exit_stack` as soon as it runs."""
    opts.directory.mkdir(parents=True, exist_ok=True)
    opts.directory.chmod(0o755)  # a private PostgreSQL run as `postgres` must reach it
    # Fail fast, before starting anything, on the ports we must bind.
    require_free_port(opts.port, "the gateway", "make dev CITY_DEV_PORT=8081 (or --port)")
    require_free_port(
        opts.synapse_port, "Synapse", "make dev CITY_DEV_SYNAPSE_PORT=8009 (or --synapse-port)"
    )
    synapse_python = os.environ.get("CITY_SYNAPSE_PYTHON") or sys.executable
    await ensure_synapse_installed(synapse_python)

    state_path = opts.directory / "state.json"
    state = DevState.load(state_path)
    config = user_config(Path.cwd())
    stack = Stack(opts, state, env={})

    database_url = await _database(config, exit_stack, stack)
    redis_url = await _redis(config, exit_stack, stack)
    state.save(state_path)

    env = effective_env(config, state, opts, database_url=database_url, redis_url=redis_url)
    stack.env = env
    settings = check_settings(env)
    write_env_file(opts.directory / "env", env)

    await _migrate(database_url)
    stack.web_built = await build_web_app()
    await _start_synapse(settings, opts, synapse_python, exit_stack, stack)
    await _start_gateway(env, opts, exit_stack, stack)
    await _demo_matrix_account(stack)
    return stack


async def ensure_synapse_installed(python: str) -> None:
    """`matrix-synapse` is a dev extra; install it if this environment lacks it."""
    if python == sys.executable:
        if importlib.util.find_spec("synapse") is not None:
            return
    else:
        probe = await asyncio.create_subprocess_exec(
            python, "-c", "import synapse", stderr=asyncio.subprocess.DEVNULL
        )
        if await probe.wait() == 0:
            return
    say(f"installing matrix-synapse into {python} (once; takes a minute) ...")
    proc = await asyncio.create_subprocess_exec(
        python, "-m", "pip", "install", "--quiet", "matrix-synapse"
    )
    if await proc.wait() != 0:
        raise DevError(
            "could not install matrix-synapse with pip (see above). It needs network access"
            " to PyPI once; or install it yourself: .venv/bin/pip install matrix-synapse"
        )


async def _database(config: Mapping[str, str], exit_stack: AsyncExitStack, stack: Stack) -> str:
    from devstack.postgres import PrivatePostgres

    url = config.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    host, port, yours = _yours("PostgreSQL", url, 5432, stack.options)
    if yours:
        stack.database_note = f"{redact(url)} (yours)"
        return url
    state = stack.state
    if state.postgres_port is None:
        state.postgres_port = _pick_port(port if is_local(host) else 5432)
    pg = PrivatePostgres(stack.options.directory / "postgres", state.postgres_port)
    await pg.start()
    state.postgres_port = pg.port
    if pg.adopted:
        say(f"  found our private PostgreSQL still running (port {pg.port}); reusing it")
    else:
        stack.started.append("postgres")
    exit_stack.push_async_callback(stopping("PostgreSQL", pg.stop))
    dbname = urlsplit(url).path.lstrip("/") or "city"
    private_url = pg.url(dbname)
    stack.database_note = _private_note(private_url, stack, "postgres")
    return private_url


async def _redis(config: Mapping[str, str], exit_stack: AsyncExitStack, stack: Stack) -> str:
    from devstack.redis import PrivateRedis, ping

    url = config.get("REDIS_URL") or DEFAULT_REDIS_URL
    host, port, yours = _yours("Redis", url, 6379, stack.options)
    if yours:
        if not await ping(url):
            raise DevError(f"REDIS_URL {redact(url)} accepts connections but PING fails")
        stack.redis_note = f"{redact(url)} (yours)"
        return url
    state = stack.state
    if state.redis_port is None or procs.port_in_use(state.redis_port):
        state.redis_port = _pick_port(port if is_local(host) else 6379)
    redis = PrivateRedis(stack.options.directory / "redis", state.redis_port)
    await redis.start()
    stack.private_redis = redis
    stack.started.append(f"redis {redis.pid}")
    exit_stack.push_async_callback(stopping("Redis", redis.stop))
    stack.redis_note = _private_note(redis.url, stack, "redis")
    return redis.url


def _yours(name: str, url: str, default_port: int, opts: DevOptions) -> tuple[str, int, bool]:
    """The host and port of the user's `name` at `url`, and whether it answers there.

    When it does not, says that a private one starts instead.
    """
    host, port = host_port(url, default_port)
    if answers(host, port):
        return host, port, True
    say(f"{name} at {host}:{port} does not answer: starting a private one in {opts.directory}")
    return host, port, False


def _private_note(url: str, stack: Stack, subdir: str) -> str:
    return f"{url} (private: {stack.options.directory}/{subdir})"


def _pick_port(preferred: int) -> int:
    return preferred if not procs.port_in_use(preferred) else free_port()


async def _migrate(database_url: str) -> None:
    import asyncpg

    from gateway.infra.db import ensure_database
    from gateway.infra.migrate import migrate

    try:
        await ensure_database(database_url)
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DevError(
            f"cannot use the database {redact(database_url)}: {exc}\n"
            "  Check DATABASE_URL (user, password, database) or unset it to use a private one."
        ) from None
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    say(f"database migrated ({len(applied)} new migration(s))")


async def _start_synapse(
    settings: Any,
    opts: DevOptions,
    python: str,
    exit_stack: AsyncExitStack,
    stack: Stack,
) -> None:
    from bridge.registration import write_registration
    from devstack.synapse import SynapseError, SynapseProcess, SynapseStartError

    data_dir = opts.directory / "synapse"
    registration = data_dir / "appservice-registration.yaml"
    write_registration(settings, registration)
    synapse = SynapseProcess(
        data_dir,
        server_name=opts.server_name,
        port=opts.synapse_port,
        registration_path=registration,
        python=python,
        log_to=opts.directory / "synapse.log",
    )
    say(f"starting Synapse ({opts.server_name}) on {opts.synapse_url} ...")
    try:
        await synapse.start(timeout=90)
    except SynapseStartError as exc:
        if exc.address_in_use:
            raise DevError(
                f"port {opts.synapse_port} is already in use, so Synapse cannot listen there."
                " Stop what uses it, or: make dev CITY_DEV_SYNAPSE_PORT=8009"
            ) from None
        raise DevError(f"Synapse did not start; log: {synapse.log_path}\n{exc}") from None
    except SynapseError as exc:
        raise DevError(f"Synapse: {exc}") from None
    stack.synapse = synapse
    stack.started.append(f"synapse {synapse.pid}")
    exit_stack.push_async_callback(stopping("Synapse", synapse.stop))


async def _start_gateway(
    env: Mapping[str, str], opts: DevOptions, exit_stack: AsyncExitStack, stack: Stack
) -> None:
    argv = [
        sys.executable,
        "-m",
        "gateway.app.cli",
        "serve",
        "--host",
        opts.host,
        "--port",
        str(opts.port),
    ]
    say(f"starting the gateway on {opts.gateway_url} ...")
    proc = await procs.spawn(argv, env={**os.environ, **env})
    stack.gateway = proc
    stack.started.append(f"gateway {proc.pid}")
    exit_stack.push_async_callback(stopping("gateway", lambda: procs.terminate(proc, 15)))

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last: str = "no answer yet"
    async with httpx.AsyncClient(base_url=opts.gateway_url, timeout=3, trust_env=False) as http:
        while True:
            if proc.returncode is not None:
                raise DevError(
                    f"the gateway exited with code {proc.returncode} during start-up (its log"
                    " is above)"
                )
            try:
                response = await http.get("/readyz")
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
            if time.monotonic() > deadline:
                raise DevError(
                    f"the gateway was not ready after {READY_TIMEOUT_SECONDS:.0f}s: /readyz said"
                    f" {last}"
                )
            await asyncio.sleep(0.2)


async def _demo_matrix_account(stack: Stack) -> None:
    from devstack.synapse import SynapseError, login, register_user

    synapse = stack.synapse
    opts = stack.options
    try:
        stack.matrix_user_id = await register_user(
            synapse.base_url, synapse.shared_secret, DEMO_MATRIX_USER, stack.state.demo_password
        )
    except SynapseError as exc:
        raise DevError(
            f"could not create the demo Matrix account @{DEMO_MATRIX_USER}:{opts.server_name}:"
            f" {exc}\n  (Its password is in {opts.directory}/state.json; if you changed it in a"
            " client, put the new one there.)"
        ) from None
    # Join the demo account to #city_general so a client shows the room at once.
    alias = f"#city_general:{opts.server_name}"
    try:
        _, token = await login(synapse.base_url, DEMO_MATRIX_USER, stack.state.demo_password)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=synapse.base_url, timeout=10, trust_env=False) as h:
            joined = await h.post(
                f"/_matrix/client/v3/join/{quote(alias, safe='')}", headers=headers
            )
            stack.joined = joined.status_code == 200
            await h.post("/_matrix/client/v3/logout", headers=headers)
    except (SynapseError, httpx.HTTPError) as exc:
        say(f"(could not join the demo account to {alias}: {exc})")
