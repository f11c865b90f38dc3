"""A real local Redis Cluster for the tests: three masters from the installed redis-server.

`make test` runs the presence and fanout suites a second time with
`TEST_REDIS_BACKEND=cluster` (tests/conftest.py): the session then starts three
`redis-server --cluster-enabled yes` in a temporary directory, joins them with
`redis-cli --cluster create ... --cluster-replicas 0`, waits for `cluster_state:ok`
and points every gateway the tests start at it (`REDIS_CLUSTER=true`). The servers
are stopped and their directory removed when the session ends.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

MASTERS = 3


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too (so at most 55535)."""
    while True:
        port = random.randint(20_000, 45_000)
        if port not in taken and _bindable(port) and _bindable(port + 10_000):
            return port


class LocalCluster:
    """Three cluster-enabled redis-servers on free ports, joined into one cluster."""

    def __init__(self, masters: int = MASTERS) -> None:
        self.ports: list[int] = []
        for _ in range(masters):
            self.ports.append(cluster_port(self.ports))
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self._dir: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 30.0) -> LocalCluster:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        assert server and cli, "redis-server and redis-cli must be installed"
        self._dir = Path(tempfile.mkdtemp(prefix="city-redis-cluster-"))
        for port in self.ports:
            args = [server, "--port", str(port), "--bind", "127.0.0.1"]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
            args += ["--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no"]
            args += ["--daemonize", "no", "--dir", str(self._dir)]
            log = open(self._dir / f"redis-{port}.log", "wb")
            self._procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(lambda p=port: self._cli(cli, p, "PING") == "PONG", deadline)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        for port in self.ports:
            self._wait(
                lambda p=port: "cluster_state:ok" in self._cli(cli, p, "CLUSTER", "INFO"), deadline
            )

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self._procs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @staticmethod
    def _cli(cli: str, port: int, *command: str) -> str:
        done = subprocess.run(
            [cli, "-p", str(port), *command], capture_output=True, text=True, timeout=5
        )
        return done.stdout.strip()

    @staticmethod
    def _wait(ready: object, deadline: float) -> None:
        while True:
            try:
                if ready():  # type: ignore[operator]
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the local Redis Cluster did not come up")
            time.sleep(0.05)


async def kill_clients(client: object, name: str) -> int:
    """CLIENT KILL every connection called `name` (or `name-<port>`, a cluster
    subscriber's per-master connection) on every master; how many were killed."""
    import redis.asyncio as aioredis

    from gateway.infra.redis_clients import is_cluster

    if is_cluster(client):
        nodes = [
            aioredis.Redis(host=node.host, port=node.port, decode_responses=True)
            for node in client.get_primaries()  # type: ignore[attr-defined]
        ]
    else:
        nodes = [client]  # type: ignore[list-item]
    killed = 0
    try:
        for node in nodes:
            for info in await node.client_list():
                found = info.get("name", "")
                if found == name or found.startswith(name + "-"):
                    await node.execute_command("CLIENT", "KILL", "ID", info["id"])
                    killed += 1
    finally:
        if nodes and nodes[0] is not client:
            for node in nodes:
                await node.aclose()
    return killed
