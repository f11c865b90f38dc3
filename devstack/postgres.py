"""A private PostgreSQL for `city-gateway dev`, from the machine's installed binaries.

Used only when `DATABASE_URL` does not answer. The cluster lives in
`<dev dir>/postgres/data` (created once with `initdb`, reused afterwards), listens
on 127.0.0.1 only (TCP, no Unix socket: no path-length or permission surprises)
and trusts local connections: a development database, never a production one.

`initdb` refuses to run as root; as root the cluster is owned by and run as the
`postgres` system user (which the OS package creates).
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import Any

from devstack.procs import DevError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "PostgreSQL is not installed here (no `initdb`/`pg_ctl` on PATH or under"
    " /usr/lib/postgresql/*/bin).\n"
    "  Install the OS package: sudo apt-get install postgresql   (Fedora: sudo dnf install"
    " postgresql-server; macOS: brew install postgresql@16)\n"
    "  or point DATABASE_URL at a PostgreSQL server that answers."
)

# Where distributions put the server binaries when they are not on PATH.
_BIN_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL (PGDG)
    "/usr/local/pgsql/bin",  # built from source
    "/opt/homebrew/opt/postgresql*/bin",  # macOS, Homebrew
    "/usr/local/opt/postgresql*/bin",
)


def find_bindir() -> Path:
    """The directory holding both `initdb` and `pg_ctl` (newest version wins)."""
    initdb = shutil.which("initdb")
    if initdb:
        bindir = Path(initdb).resolve().parent
        if (bindir / "pg_ctl").exists():
            return bindir
    candidates = [Path(p) for pattern in _BIN_GLOBS for p in glob.glob(pattern)]
    candidates = [d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    if not candidates:
        raise DevError(INSTALL_HINT)
    return max(candidates, key=_version_key)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


class PrivatePostgres:
    """One PostgreSQL cluster under `root`, started and stopped with pg_ctl."""

    def __init__(self, root: Path, port: int, bindir: Path | None = None) -> None:
        self.root = root.resolve()
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = port
        self.bindir = bindir or find_bindir()
        self.adopted = False  # found running (left by an earlier run) instead of started
        self._run_as = _run_as()

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._run_as is not None:
            os.chown(self.root, self._run_as.pw_uid, self._run_as.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            log.info("initdb %s", self.data)
            await self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )
        running_port = self._running_port()
        if running_port is not None:
            # An earlier `city-gateway dev` was killed before it could stop it.
            self.port = running_port
            self.adopted = True
            return
        await self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            new_session=True,  # the postmaster must not get the terminal's Ctrl-C
        )

    async def stop(self) -> None:
        if self._running_port() is None:
            return
        await self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")

    def _running_port(self) -> int | None:
        """The port of a postmaster running on this data dir, if any."""
        pid_file = self.data / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # stale pid file after a crash: pg_ctl start copes with it
        except PermissionError:
            pass  # exists, owned by the postgres user
        return port

    async def _run(self, tool: str, *args: str, new_session: bool = False) -> None:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid)
        proc = await asyncio.create_subprocess_exec(
            str(self.bindir / tool),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.root,
            start_new_session=new_session,
            **kwargs,
        )
        output, _ = await proc.communicate()
        if proc.returncode != 0:
            text = output.decode(errors="replace").strip()
            hint = ""
            if "Permission denied" in text and self._run_as is not None:
                hint = (
                    f"\n  As root the cluster runs as the `postgres` user, which must be able"
                    f" to reach {self.root} (every parent directory needs o+x)."
                )
            tail = ""
            if tool == "pg_ctl" and self.log_path.exists():
                tail = (
                    "\n--- postgres.log ---\n" + self.log_path.read_text(errors="replace")[-2000:]
                )
            raise DevError(f"{tool} {args[0]} failed (exit {proc.returncode}):\n{text}{hint}{tail}")


def _run_as() -> pwd.struct_passwd | None:
    """As root: the `postgres` user to run the cluster as (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise DevError(
            "initdb cannot run as root and there is no `postgres` user to run it as.\n"
            "  Run `make dev` as a normal user, install the OS package postgresql (it"
            " creates that user), or set DATABASE_URL to a server that answers."
        ) from None
