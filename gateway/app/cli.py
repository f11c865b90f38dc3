"""The `city-gateway` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import entry_points
from typing import Any

from gateway.infra.settings import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"city-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gateway.app.workers import migrate_before_workers, resolve_workers, serve_workers
    from gateway.infra.logs import configure_logging

    settings = _settings()
    configure_logging(settings)
    try:
        workers = resolve_workers(args.workers or settings.city_workers)
    except ValueError:
        print("city-gateway: --workers must be a number ≥ 1 or 'auto'", file=sys.stderr)
        raise SystemExit(2) from None
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "ws_max_size": settings.ws_max_frame_bytes,
        # Compression roughly doubles memory and send cost per socket; chat frames
        # are small, and one room message goes to thousands of sockets.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        from gateway.app.main import create_app

        uvicorn.run(create_app(settings), **options)
        return
    # N processes on one socket; each builds its own app and Runtime from the same
    # environment (gateway/app/workers.py says why every guarantee still holds).
    migrate_before_workers(settings)
    serve_workers(workers, **options)


def cmd_migrate(_: argparse.Namespace) -> None:
    from gateway.app.workers import migrate_database

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = asyncio.run(migrate_database(settings))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def cmd_token(args: argparse.Namespace) -> None:
    from gateway.core.auth import USER_ID_RE, mint_token

    settings = _settings()
    if not USER_ID_RE.match(args.user_id):
        print("city-gateway: USER_ID must look like u_123", file=sys.stderr)
        raise SystemExit(2)
    print(mint_token(settings.jwt_secret, args.user_id, args.name, args.ttl))


def cmd_registration(_: argparse.Namespace) -> None:
    from bridge.registration import render_registration

    settings = _settings()
    try:
        sys.stdout.write(render_registration(settings))
    except ConfigError as exc:
        print(f"city-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


# Subcommands contributed by other installed packages (`dev`, from devstack/): each
# entry point is a `register(subparsers)` function. Looked up by name so that the
# service never imports development tooling.
COMMANDS_GROUP = "city_gateway.commands"


def _register_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            register = entry_point.load()
        except ImportError:
            continue  # declared but not shipped (the Docker image has no devstack/)
        register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="city-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        default=None,
        metavar="N",
        help="worker processes: a number or 'auto' (one per CPU); default CITY_WORKERS or 1",
    )
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    sub.add_parser(
        "registration", help="print the Synapse appservice registration YAML"
    ).set_defaults(func=cmd_registration)

    token = sub.add_parser("token", help="mint a user JWT with the configured secret")
    token.add_argument("user_id")
    token.add_argument("--name", default=None)
    token.add_argument("--ttl", type=int, default=7 * 86400, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    _register_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
