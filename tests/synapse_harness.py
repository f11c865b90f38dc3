"""A real Synapse with our appservice registered, for tests (no pytest in here).

Starting Synapse costs a few seconds, so build a session-scoped fixture on this:

    gateway_port = free_port()               # the gateway's port, chosen in advance
    overrides = matrix_overrides(gateway_port)
    settings = make_settings(**overrides)     # tests/conftest.py
    async with await start_synapse(settings, data_dir=tmp_path_factory.mktemp("hs")) as hs:
        gateway_settings = hs.settings        # = settings + MATRIX_HOMESERVER_URL
        alice = await hs.make_user("alice")   # MatrixUser(user_id, password, access_token)

Synapse pushes transactions to `settings.matrix_appservice_url`, so start the gateway
on `gateway_port`. Until it listens, Synapse just retries with back-off.

Set CITY_SYNAPSE_PYTHON to run Synapse from another interpreter (e.g. a separate
`.venv-synapse/bin/python`) when it cannot be installed next to the gateway.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from bridge.registration import write_registration
from devstack.procs import StopOnExit
from devstack.synapse import (
    DEFAULT_SYNC_ONLINE_TIMEOUT_MS,
    SynapseProcess,
    SynapseStartError,
    free_port,
    login,
    register_user,
)
from gateway.infra.settings import Settings

DEFAULT_SERVER_NAME = "city.test"

_user_counter = itertools.count(1)


def matrix_overrides(
    gateway_port: int, *, server_name: str = DEFAULT_SERVER_NAME
) -> dict[str, Any]:
    """Settings fields for a gateway bridged to a test Synapse (fresh random tokens)."""
    return {
        "matrix_server_name": server_name,
        "matrix_as_token": "as_" + secrets.token_urlsafe(24),
        "matrix_hs_token": "hs_" + secrets.token_urlsafe(24),
        "matrix_appservice_url": f"http://127.0.0.1:{gateway_port}",
    }


class MatrixUser(NamedTuple):
    user_id: str
    password: str
    access_token: str


class SynapseHarness(StopOnExit):
    """A started Synapse plus what tests need to talk to it."""

    def __init__(self, process: SynapseProcess, settings: Settings, owned_dir: Path | None) -> None:
        self.process = process
        self._settings = settings
        self._owned_dir = owned_dir  # a temp dir we created, removed on stop()

    @property
    def base_url(self) -> str:
        return self.process.base_url

    @property
    def server_name(self) -> str:
        return self.process.server_name

    @property
    def shared_secret(self) -> str:
        return self.process.shared_secret

    @property
    def settings(self) -> Settings:
        """The given settings with MATRIX_HOMESERVER_URL pointing at this Synapse."""
        return self._settings.model_copy(update={"matrix_homeserver_url": self.base_url})

    @property
    def as_token(self) -> str:
        assert self._settings.matrix_as_token is not None
        return self._settings.matrix_as_token.get_secret_value()

    @property
    def hs_token(self) -> str:
        assert self._settings.matrix_hs_token is not None
        return self._settings.matrix_hs_token.get_secret_value()

    @property
    def as_headers(self) -> dict[str, str]:
        """Authorization for client-server calls as the appservice (add ?user_id=)."""
        return {"Authorization": f"Bearer {self.as_token}"}

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    async def make_user(
        self, localpart: str | None = None, *, password: str | None = None, admin: bool = False
    ) -> MatrixUser:
        """A normal Matrix user (as an Element user would be), logged in once.

        Without a localpart the name is unique, so tests sharing one Synapse never
        collide. Localparts in the appservice's exclusive namespaces are refused.
        """
        localpart = localpart or f"user{next(_user_counter)}_{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(16)
        user_id = await register_user(
            self.base_url, self.shared_secret, localpart, password, admin=admin
        )
        _, token = await login(self.base_url, localpart, password)
        return MatrixUser(user_id, password, token)

    async def stop(self) -> None:
        await self.process.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None


async def start_synapse(
    settings: Settings,
    *,
    data_dir: Path | None = None,
    log_to: Path | None = None,
    presence_sync_online_timeout_ms: int = DEFAULT_SYNC_ONLINE_TIMEOUT_MS,
    timeout: float = 60,
) -> SynapseHarness:
    """Write the registration for `settings` and start Synapse on a free port.

    Pass `data_dir` (e.g. from tmp_path_factory) to keep Synapse's log after a failing
    run; without it a temp dir is used and removed on stop().
    """
    if not settings.matrix_server_name:
        raise ValueError("settings.matrix_server_name is required (see matrix_overrides)")
    owned_dir: Path | None = None
    if data_dir is None:
        data_dir = owned_dir = Path(tempfile.mkdtemp(prefix="city-synapse-"))
    registration_path = data_dir / "appservice-registration.yaml"
    write_registration(settings, registration_path)

    python = os.environ.get("CITY_SYNAPSE_PYTHON") or sys.executable
    # free_port() can race with other test runs on this machine; a port taken before
    # Synapse binds it is retried on a new one (the config is re-rendered per start).
    for attempt in itertools.count(1):
        process = SynapseProcess(
            data_dir,
            server_name=settings.matrix_server_name,
            port=free_port(),
            registration_path=registration_path,
            python=python,
            log_to=log_to,
            presence_sync_online_timeout_ms=presence_sync_online_timeout_ms,
        )
        try:
            await process.start(timeout=timeout)
        except SynapseStartError as exc:
            if exc.address_in_use and attempt < 3:
                continue
            if owned_dir is not None:
                shutil.rmtree(owned_dir, ignore_errors=True)
            raise
        except BaseException:
            if owned_dir is not None:
                shutil.rmtree(owned_dir, ignore_errors=True)
            raise
        return SynapseHarness(process, settings, owned_dir)
    raise AssertionError("unreachable")
