"""Run a real Synapse (from PyPI, SQLite-backed) for `make dev` and the tests.

The data dir holds everything a homeserver keeps between runs: the SQLite database,
media, the signing key and `secrets.json` (registration shared secret, macaroon and
form secrets). Those are created once and reused, so a dev stack keeps its users and
tokens across restarts. homeserver.yaml is rendered again on every `prepare()` from
`synapse-config/homeserver.yaml.template`, so a new port or template change applies
without deleting state.

Works with no network: no key servers, no stats reporting, loopback listener only.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx

from devstack.procs import ChildProcess, StopOnExit

log = logging.getLogger(__name__)

# The repository's synapse-config/ (this file is devstack/synapse.py).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "synapse-config"

DEFAULT_SYNC_ONLINE_TIMEOUT_MS = 30_000

# Started through this launcher instead of `python -m synapse.app.homeserver`
# directly: it asks Linux to SIGTERM Synapse when the process that started it dies
# (PR_SET_PDEATHSIG = 1), so a test run killed with SIGKILL or a crashed `make dev`
# does not leave a homeserver holding a port on a machine other engineers share.
# The setting survives exec. Caveat: "dies" means the starting *thread* exits, so
# start Synapse from a long-lived thread (the event loop's, normally).
_LAUNCHER = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (AttributeError, OSError):
    pass  # not Linux: stop() and the atexit hook still apply
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent exited before Synapse started")
os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", *sys.argv[2:]])
"""

_SECRET_KEYS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")


class SynapseError(RuntimeError):
    """Synapse could not be prepared, started or asked something."""


class SynapseStartError(SynapseError):
    """Synapse exited or did not answer in time; carries the end of its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n--- end of Synapse log ---\n{log_tail}")
        self.log_tail = log_tail

    @property
    def address_in_use(self) -> bool:
        """The port was taken between free_port() and Synapse binding it: retry."""
        return "Address already in use" in self.log_tail


class SynapseProcess(ChildProcess, StopOnExit):
    """One Synapse homeserver process bound to 127.0.0.1:`port`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str,
        port: int,
        registration_path: Path,
        python: str = sys.executable,
        log_to: Path | None = None,
        config_dir: Path = CONFIG_DIR,
        presence_sync_online_timeout_ms: int = DEFAULT_SYNC_ONLINE_TIMEOUT_MS,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.server_name = server_name
        self.port = port
        self.registration_path = registration_path.resolve()
        self.python = python
        self.log_path = (log_to or self.data_dir / "synapse.log").resolve()
        self.config_dir = config_dir
        self.presence_sync_online_timeout_ms = presence_sync_online_timeout_ms
        self.config_path = self.data_dir / "homeserver.yaml"
        self._secrets: dict[str, str] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    # --- properties ---------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def shared_secret(self) -> str:
        """The registration shared secret (admin user registration)."""
        return self._load_secrets()["registration_shared_secret"]

    # --- preparation --------------------------------------------------------------
    def prepare(self) -> None:
        """Create the data dir, secrets and signing key once; render the config."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.registration_path.is_file():
            raise SynapseError(f"appservice registration not found: {self.registration_path}")
        values = self._load_secrets()
        signing_key = self.data_dir / "signing.key"
        if not signing_key.exists():
            self._generate_signing_key(signing_key)
        log_config = self.data_dir / "log.yaml"
        log_config.write_text((self.config_dir / "log.yaml").read_text(encoding="utf-8"))

        template = string.Template(
            (self.config_dir / "homeserver.yaml.template").read_text(encoding="utf-8")
        )
        # JSON strings are valid YAML double-quoted scalars: no escaping worries for
        # paths or secrets, whatever characters they contain.
        q = json.dumps
        rendered = template.substitute(
            server_name=q(self.server_name),
            public_baseurl=q(f"{self.base_url}/"),
            port=str(int(self.port)),
            database_path=q(str(self.data_dir / "homeserver.db")),
            log_config=q(str(log_config)),
            media_store_path=q(str(self.data_dir / "media_store")),
            signing_key_path=q(str(signing_key)),
            registration_shared_secret=q(values["registration_shared_secret"]),
            macaroon_secret_key=q(values["macaroon_secret_key"]),
            form_secret=q(values["form_secret"]),
            app_service_config_files=q([str(self.registration_path)]),
            presence_sync_online_timeout=str(int(self.presence_sync_online_timeout_ms)),
        )
        header = (
            "# GENERATED from synapse-config/homeserver.yaml.template on every start;\n"
            "# edit the template instead.\n"
        )
        _write_private(self.config_path, header + rendered)

    def _load_secrets(self) -> dict[str, str]:
        """Secrets live in the data dir; created on first use, then never changed.

        Also pins the server name: Synapse refuses an existing database under another
        name, and saying so here is clearer than its traceback.
        """
        if self._secrets is not None:
            return self._secrets
        path = self.data_dir / "secrets.json"
        if path.exists():
            stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("server_name") != self.server_name:
                raise SynapseError(
                    f"{self.data_dir} belongs to server_name {stored.get('server_name')!r},"
                    f" not {self.server_name!r}; use that name or delete the directory"
                )
            values = {k: str(stored[k]) for k in _SECRET_KEYS}
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            values = {k: secrets.token_urlsafe(32) for k in _SECRET_KEYS}
            _write_private(path, json.dumps({"server_name": self.server_name, **values}))
        self._secrets = values
        return values

    def _generate_signing_key(self, path: Path) -> None:
        # Synapse's own script (what `--generate-keys` uses, without importing the
        # whole homeserver: 0.7 s instead of 3 s), run with Synapse's interpreter.
        result = subprocess.run(
            [self.python, "-m", "synapse._scripts.generate_signing_key", "-o", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise SynapseError(
                f"generating the signing key with {self.python} failed:\n{result.stderr}"
            )

    # --- lifecycle ----------------------------------------------------------------
    async def start(self, timeout: float = 60) -> None:
        """Start Synapse and return once the client API answers.

        Raises SynapseStartError with the end of Synapse's log if it exits or does not
        answer within `timeout` s (an outer asyncio.timeout() would only cancel).
        """
        if self.running:
            return
        # Off the loop: generating the signing key runs a ~1 s subprocess.
        await asyncio.to_thread(self.prepare)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as logf:
            log_offset = logf.tell()
            logf.write(f"--- city-gateway: starting Synapse on port {self.port} ---\n".encode())
            logf.flush()
            self._proc = await asyncio.create_subprocess_exec(
                self.python,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                "--config-path",
                str(self.config_path),
                cwd=self.data_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                # Own process group: stop() signals the group, and Ctrl-C in a
                # terminal reaches only the dev stack, which then stops us in order.
                start_new_session=True,
            )
        atexit.register(self._kill_now)
        log.info("synapse starting: pid %s, port %s", self._proc.pid, self.port)

        started = time.monotonic()
        try:
            await self._wait_ready(started + timeout, log_offset)
        except BaseException:
            # Never leave a half-started homeserver behind, whatever interrupted us.
            await self.stop()
            raise
        log.info("synapse ready in %.1fs at %s", time.monotonic() - started, self.base_url)

    async def _wait_ready(self, deadline: float, log_offset: int) -> None:
        assert self._proc is not None
        url = f"{self.base_url}/_matrix/client/versions"
        async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
            while True:
                if self._proc.returncode is not None:
                    raise SynapseStartError(
                        f"Synapse exited with code {self._proc.returncode} during start-up",
                        self._log_tail(log_offset),
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise SynapseStartError(
                        f"Synapse did not answer on {url} in time", self._log_tail(log_offset)
                    )
                await asyncio.sleep(0.1)

    async def stop(self, grace: float = 10) -> None:
        """SIGTERM the process group, wait up to `grace` s, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("synapse ignored SIGTERM for %ss; killing it", grace)
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        # Only once it is gone: a stop() cancelled half-way keeps the exit hook armed.
        atexit.unregister(self._kill_now)
        self._proc = None

    def _kill_now(self) -> None:
        """Last resort at interpreter exit when stop() was never awaited."""
        if self._proc is not None and self._proc.returncode is None:
            _signal_group(self._proc.pid, signal.SIGKILL)

    def _log_tail(self, offset: int = 0, limit: int = 6000) -> str:
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(offset, size - limit))
                return f.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"

    async def __aenter__(self) -> Self:
        await self.start()
        return self


# --- helpers ----------------------------------------------------------------------
async def register_user(
    base_url: str,
    shared_secret: str,
    username: str,
    password: str,
    admin: bool = False,
) -> str:
    """Create a normal (non-appservice) user through the shared-secret admin API.

    Returns the full user id. Registering an existing user with the same password
    is fine (tests and `make dev` re-run); with another password it raises.
    """
    url = f"{base_url.rstrip('/')}/_synapse/admin/v1/register"
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        nonce_resp = await client.get(url)
        _raise_for_matrix(nonce_resp, "fetching a registration nonce")
        nonce: str = nonce_resp.json()["nonce"]
        mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, username, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        resp = await client.post(
            url,
            json={
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        if resp.status_code == 400 and _errcode(resp) == "M_USER_IN_USE":
            # The admin API does not say which server it is; a login both confirms
            # the password and returns the full user id.
            user_id, token = await login(base_url, username, password)
            await client.post(
                f"{base_url.rstrip('/')}/_matrix/client/v3/logout",
                headers={"Authorization": f"Bearer {token}"},
            )
            return user_id
        _raise_for_matrix(resp, f"registering {username}")
        return str(resp.json()["user_id"])


async def login(base_url: str, username: str, password: str) -> tuple[str, str]:
    """Password login; returns (user_id, access_token)."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        resp = await client.post(
            f"{base_url.rstrip('/')}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": username},
                "password": password,
            },
        )
    _raise_for_matrix(resp, f"logging in as {username}")
    body = resp.json()
    return str(body["user_id"]), str(body["access_token"])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _errcode(resp: httpx.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("errcode"), str):
        return str(body["errcode"])
    return None


def _raise_for_matrix(resp: httpx.Response, doing: str) -> None:
    if resp.status_code != 200:
        raise SynapseError(f"{doing} failed: HTTP {resp.status_code} {resp.text[:500]}")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
