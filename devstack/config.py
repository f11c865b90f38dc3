"""The dev stack's configuration: command options, generated secrets, effective settings.

Everything generated (tokens, secrets, the demo password, private ports) is made
once, kept in `.city-dev/state.json` (mode 0600) and reused, so a restart keeps the
data and the logins. The effective settings are written to `.city-dev/env`
(sourceable by a shell and readable as a dotenv file).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.procs import DevError

DEFAULT_DIR = ".city-dev"
DEFAULT_SERVER_NAME = "city.local"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/city"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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


def options_from_args(args: argparse.Namespace) -> DevOptions:
    config = user_config(Path.cwd())
    return DevOptions(
        directory=Path(args.dir).resolve(),
        host=args.host,
        port=args.port,
        synapse_port=args.synapse_port,
        server_name=args.server_name or config.get("MATRIX_SERVER_NAME") or DEFAULT_SERVER_NAME,
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


def check_settings(env: Mapping[str, str]) -> Any:
    from gateway.infra.settings import ConfigError, load_settings

    # What the child will build: the environment and `.env`, with ours on top.
    try:
        return load_settings(**{key.lower(): value for key, value in env.items()})
    except ConfigError as exc:
        raise DevError(f"configuration: {exc}") from None


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    lines = [
        "# Effective settings of the running `make dev` stack (rewritten on every start).",
        "# Use them from a shell:  set -a; . .city-dev/env; set +a",
        "# then e.g.:              .venv/bin/city-gateway token u_alice --name Alice",
    ]
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    write_private(path, "\n".join(lines) + "\n")
