"""`city-gateway dev`: the whole city on one machine, for a newcomer.

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

This module is the command (signals, the ready block, the watchdog); the parts
live in devstack.config (options, state, settings), devstack.stack (starting each
service), devstack.webapp (the web build) and devstack.procs (process helpers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from devstack.config import DevOptions, add_arguments, options_from_args
from devstack.procs import DevError, say
from devstack.stack import Stack, start_all

DEMO_CITY_USER = "u_demo"
DEMO_CITY_NAME = "Demo"
DEMO_TOKEN_TTL = 7 * 86400
READY_LINE = "city-gateway dev: ready"


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
