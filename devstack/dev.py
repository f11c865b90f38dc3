"""`city-gateway dev`: the whole city on one machine, for a newcomer (SPEC §11).

One command starts, in order, and stops in reverse order on Ctrl-C / SIGTERM:

1. PostgreSQL and Redis: the ones `DATABASE_URL` / `REDIS_URL` point at when they
   answer, else private ones from the installed binaries (data in `.city-dev/`);
2. Synapse (from PyPI, SQLite, config from `synapse-config/`) with our appservice;
3. migrations, then the gateway (`city-gateway serve`, a child process) with the
   Matrix bridge on;
4. a demo Matrix account (registration shared secret) in `#city_general`.

Everything generated (tokens, secrets, the demo password, private ports) is made
once, kept in `.city-dev/state.json` and reused, so a restart keeps the data and
the logins. The effective settings are written to `.city-dev/env` (sourceable by a
shell and readable as a dotenv file). Only what this command started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from devstack import procs
from devstack.procs import DevError, answers, host_port, is_local, require_free_port
from devstack.synapse import free_port

DEFAULT_DIR = ".city-dev"
DEFAULT_SERVER_NAME = "city.local"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/city"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEMO_CITY_USER = "u_demo"
DEMO_CITY_NAME = "Demo"
DEMO_MATRIX_USER = "demo"
DEMO_TOKEN_TTL = 7 * 86400
READY_LINE = "city-gateway dev: ready"
READY_TIMEOUT_SECONDS = 120.0


def say(message: str) -> None:
    print(f"city-dev: {message}", flush=True)


# --- options and persisted state ---------------------------------------------------
@dataclass(frozen=True)
class DevOptions:
    directory: Path
    host: str
    port: int
    synapse_port: int
    server_name: str

    @property
    def gateway_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def synapse_url(self) -> str:
        return f"http://127.0.0.1:{self.synapse_port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("CITY_DEV_PORT", "8080")),
        help="gateway port (env CITY_DEV_PORT, default 8080)",
    )
    parser.add_argument(
        "--synapse-port",
        type=int,
        default=int(env.get("CITY_DEV_SYNAPSE_PORT", "8008")),
        help="Synapse port (env CITY_DEV_SYNAPSE_PORT, default 8008)",
    )
    parser.add_argument(
        "--host",
        default=env.get("CITY_DEV_HOST", "127.0.0.1"),
        help="gateway listen address (env CITY_DEV_HOST; 0.0.0.0 to reach it from elsewhere)",
    )
    parser.add_argument(
        "--dir",
        default=env.get("CITY_DEV_DIR", DEFAULT_DIR),
        help="where generated config and data live (env CITY_DEV_DIR, default .city-dev)",
    )
    parser.add_argument(
        "--server-name",
        default=None,
        help="Matrix server name (env MATRIX_SERVER_NAME, default city.local)",
    )


@dataclass
class DevState:
    """Generated once per dev dir, then reused (`.city-dev/state.json`, mode 0600)."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    as_token: str = field(default_factory=lambda: "as_" + secrets.token_urlsafe(32))
    hs_token: str = field(default_factory=lambda: "hs_" + secrets.token_urlsafe(32))
    demo_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    postgres_port: int | None = None
    redis_port: int | None = None

    @classmethod
    def load(cls, path: Path) -> DevState:
        if not path.exists():
            return cls()
        stored = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in stored.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def user_config(cwd: Path) -> dict[str, str]:
    """What the user configured: `.env` in the current directory, then the environment."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    env_file = cwd / ".env"
    if env_file.is_file():
        values.update({k.upper(): v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update({k.upper(): v for k, v in os.environ.items()})
    return values


# --- the stack -----------------------------------------------------------------------
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

    database_url = await _database(config, state, opts, exit_stack, stack)
    redis_url = await _redis(config, state, opts, exit_stack, stack)
    state.save(state_path)

    env = effective_env(config, state, opts, database_url=database_url, redis_url=redis_url)
    stack.env = env
    settings = _check_settings(env)
    _write_env_file(opts.directory / "env", env)

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


async def _database(
    config: Mapping[str, str],
    state: DevState,
    opts: DevOptions,
    exit_stack: AsyncExitStack,
    stack: Stack,
) -> str:
    from devstack.postgres import PrivatePostgres

    url = config.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    host, port = host_port(url, 5432)
    if answers(host, port):
        stack.database_note = f"{_redact(url)} (yours)"
        return url
    say(f"PostgreSQL at {host}:{port} does not answer: starting a private one in {opts.directory}")
    if state.postgres_port is None:
        state.postgres_port = _pick_port(port if is_local(host) else 5432)
    pg = PrivatePostgres(opts.directory / "postgres", state.postgres_port)
    await pg.start()
    state.postgres_port = pg.port
    if pg.adopted:
        say(f"  found our private PostgreSQL still running (port {pg.port}); reusing it")
    else:
        stack.started.append("postgres")
    exit_stack.push_async_callback(_stopping("PostgreSQL", pg.stop))
    dbname = urlsplit(url).path.lstrip("/") or "city"
    private_url = pg.url(dbname)
    stack.database_note = f"{private_url} (private: {opts.directory}/postgres)"
    return private_url


async def _redis(
    config: Mapping[str, str],
    state: DevState,
    opts: DevOptions,
    exit_stack: AsyncExitStack,
    stack: Stack,
) -> str:
    from devstack.redis import PrivateRedis, ping

    url = config.get("REDIS_URL") or DEFAULT_REDIS_URL
    host, port = host_port(url, 6379)
    if answers(host, port):
        if not await ping(url):
            raise DevError(f"REDIS_URL {_redact(url)} accepts connections but PING fails")
        stack.redis_note = f"{_redact(url)} (yours)"
        return url
    say(f"Redis at {host}:{port} does not answer: starting a private one in {opts.directory}")
    if state.redis_port is None or procs.port_in_use(state.redis_port):
        state.redis_port = _pick_port(port if is_local(host) else 6379)
    redis = PrivateRedis(opts.directory / "redis", state.redis_port)
    await redis.start()
    stack.private_redis = redis
    stack.started.append(f"redis {redis.pid}")
    exit_stack.push_async_callback(_stopping("Redis", redis.stop))
    stack.redis_note = f"{redis.url} (private: {opts.directory}/redis)"
    return redis.url


def _pick_port(preferred: int) -> int:
    return preferred if not procs.port_in_use(preferred) else free_port()


def effective_env(
    config: Mapping[str, str],
    state: DevState,
    opts: DevOptions,
    *,
    database_url: str,
    redis_url: str,
) -> dict[str, str]:
    """The gateway's settings: the user's where given, generated ones otherwise."""

    def pick(name: str, generated: str) -> str:
        return config.get(name) or generated

    return {
        "CITY_ENV": "development",
        "LOG_FORMAT": "human",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CITY_JWT_SECRET": pick("CITY_JWT_SECRET", state.jwt_secret),
        "CITY_INTERNAL_TOKEN": pick("CITY_INTERNAL_TOKEN", state.internal_token),
        "MATRIX_HOMESERVER_URL": opts.synapse_url,
        "MATRIX_SERVER_NAME": opts.server_name,
        "MATRIX_AS_TOKEN": pick("MATRIX_AS_TOKEN", state.as_token),
        "MATRIX_HS_TOKEN": pick("MATRIX_HS_TOKEN", state.hs_token),
        "MATRIX_APPSERVICE_URL": f"http://127.0.0.1:{opts.port}",
    }


def _check_settings(env: Mapping[str, str]) -> Any:
    from gateway.infra.settings import ConfigError, load_settings

    # What the child will build: the environment and `.env`, with ours on top.
    try:
        return load_settings(**{key.lower(): value for key, value in env.items()})
    except ConfigError as exc:
        raise DevError(f"configuration: {exc}") from None


def _write_env_file(path: Path, env: Mapping[str, str]) -> None:
    lines = [
        "# Effective settings of the running `make dev` stack (rewritten on every start).",
        "# Use them from a shell:  set -a; . .city-dev/env; set +a",
        "# then e.g.:              .venv/bin/city-gateway token u_alice --name Alice",
    ]
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    write_private(path, "\n".join(lines) + "\n")


async def _migrate(database_url: str) -> None:
    import asyncpg

    from gateway.infra.db import ensure_database
    from gateway.infra.migrate import migrate

    try:
        await ensure_database(database_url)
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DevError(
            f"cannot use the database {_redact(database_url)}: {exc}\n"
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
    exit_stack.push_async_callback(_stopping("Synapse", synapse.stop))


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
    exit_stack.push_async_callback(_stopping("gateway", lambda: procs.terminate(proc, 15)))

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


WEB_DIR = Path(__file__).resolve().parents[1] / "web"


async def build_web_app() -> bool:
    """Build the City web app (web/) when npm is there; the API works without it."""
    npm = shutil.which("npm")
    if npm is None or not (WEB_DIR / "package.json").is_file():
        say("npm not found: the web app (/app/) is not built; the API works without it")
        return (WEB_DIR / "app" / "dist" / "index.html").is_file()
    if _web_build_current():
        return True
    lock = WEB_DIR / "package-lock.json"
    installed = WEB_DIR / "node_modules" / ".package-lock.json"
    steps: list[list[str]] = []
    if not installed.is_file() or installed.stat().st_mtime < lock.stat().st_mtime:
        steps.append([npm, "ci", "--no-audit", "--no-fund"])
    steps.append([npm, "run", "build"])
    say("building the web app (web/, npm run build)")
    for step in steps:
        proc = await asyncio.create_subprocess_exec(
            *step,
            cwd=WEB_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            tail = output.decode(errors="replace")[-1500:]
            say(f"the web app did not build ({' '.join(step[1:])}); /app/ is off:\n{tail}")
            return False
    return True


def _web_build_current() -> bool:
    """The build is newer than every source and package file (no need to rebuild)."""
    index = WEB_DIR / "app" / "dist" / "index.html"
    if not index.is_file():
        return False
    built = index.stat().st_mtime
    sources = [WEB_DIR / "package-lock.json", WEB_DIR / "app" / "index.html"]
    for folder in (WEB_DIR / "app" / "src", WEB_DIR / "client" / "src"):
        sources.extend(p for p in folder.rglob("*") if p.is_file())
    return all(p.stat().st_mtime <= built for p in sources if p.exists())


def ready_block(stack: Stack) -> str:
    from gateway.core.auth import mint_token

    opts = stack.options
    env = stack.env
    token = mint_token(env["CITY_JWT_SECRET"], DEMO_CITY_USER, DEMO_CITY_NAME, DEMO_TOKEN_TTL)
    api = opts.gateway_url
    rel = _relative(opts.directory)
    rule = "─" * 78
    return "\n".join(
        [
            rule,
            "  DAARION City is running. Ctrl-C stops everything started here.",
            "",
            f"  API          {api}        docs: {api}/docs",
            *(
                # The token rides in the fragment: browsers never send it to a server.
                [f"  Web app      {api}/app/#token={token}"]
                if stack.web_built
                else ["  Web app      not built (install Node.js/npm, then make dev again)"]
            ),
            f"  Synapse      {opts.synapse_url}        server name: {opts.server_name}",
            f"  PostgreSQL   {stack.database_note}",
            f"  Redis        {stack.redis_note}",
            "",
            f"  City user {DEMO_CITY_USER} ({DEMO_CITY_NAME}), token valid 7 days:",
            f"    export CITY_TOKEN={token}",
            f'    curl -H "Authorization: Bearer $CITY_TOKEN" {api}/city/rooms',
            f"  More tokens: (set -a; . {rel}/env; .venv/bin/city-gateway token u_alice"
            " --name Alice)",
            "",
            "  Matrix (Element or any client; homeserver URL above):",
            f"    user {stack.matrix_user_id}   password {stack.state.demo_password}",
            f"    room #city_general:{opts.server_name}"
            + ("  (already joined)" if stack.joined else ""),
            "",
            f"  Settings {rel}/env · Synapse log {rel}/synapse.log",
            rule,
            f"{READY_LINE} at {api}",
        ]
    )


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _stopping(name: str, stop: Any) -> Any:
    async def run() -> None:
        say(f"stopping {name}")
        try:
            await stop()
        except Exception as exc:
            say(f"stopping {name} failed: {exc}")

    return run


# --- the command ---------------------------------------------------------------------
async def _watch(stack: Stack) -> str:
    """Returns (as a reason) when a part we started dies on its own."""
    while True:
        if stack.gateway is not None and stack.gateway.returncode is not None:
            return f"the gateway exited (code {stack.gateway.returncode})"
        if stack.synapse is not None and not stack.synapse.running:
            return f"Synapse exited; see {stack.synapse.log_path}"
        if stack.private_redis is not None and not stack.private_redis.running:
            return "the private Redis exited"
        await asyncio.sleep(0.5)


async def run_dev(opts: DevOptions) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    async with AsyncExitStack() as exit_stack:
        starting = asyncio.ensure_future(start_all(opts, exit_stack))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            say("interrupted during start-up; stopping what was started")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, DevError):
                await starting
            return 130
        stopped.cancel()
        error = starting.exception()
        if error is not None:
            if isinstance(error, DevError):
                print(f"\ncity-dev: ERROR: {error}\n", file=sys.stderr, flush=True)
            else:
                import traceback

                traceback.print_exception(error)
            return 1
        stack = starting.result()
        say("started: " + ", ".join(stack.started))
        print(ready_block(stack), flush=True)

        watch = asyncio.ensure_future(_watch(stack))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({watch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if watch.done():
            print(f"\ncity-dev: ERROR: {watch.result()}; stopping the rest", file=sys.stderr)
            code = 1
        else:
            watch.cancel()
            say("stopping (Ctrl-C)")
    say("stopped")
    return code


def options_from_args(args: argparse.Namespace) -> DevOptions:
    config = user_config(Path.cwd())
    return DevOptions(
        directory=Path(args.dir).resolve(),
        host=args.host,
        port=args.port,
        synapse_port=args.synapse_port,
        server_name=args.server_name or config.get("MATRIX_SERVER_NAME") or DEFAULT_SERVER_NAME,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `city-gateway dev` (entry point group `city_gateway.commands` in pyproject)."""
    dev = sub.add_parser("dev", help="run the whole stack locally (PostgreSQL, Redis, Synapse)")
    add_arguments(dev)
    dev.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    opts = options_from_args(args)
    try:
        code = asyncio.run(run_dev(opts))
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed
        code = 130
    raise SystemExit(code)
