"""Bridge latency against Synapse's own client → client delivery, in one run.

One real Synapse (SQLite, from PyPI) with our appservice and one `city-gateway
serve` process. Three paths, measured one message at a time (no queueing):

- Synapse baseline: Matrix user A sends → Matrix user B's long-poll /sync returns it.
- City → Matrix: `POST /city/rooms/{id}/messages` → user B's /sync returns the
  ghost's event (outbox → masqueraded send → Synapse → sync).
- Matrix → City: user A sends → a city WebSocket client receives `room.message`
  (Synapse → appservice transaction → inbox → fanout).

Target: each bridge p95 ≤ Synapse's p95 + 50 ms. Writes bench/RESULTS.md.

    .venv/bin/python bench/matrix_latency.py [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_section
from gateway.infra.settings import Settings
from tests.servers import GatewayProcess, wait_until
from tests.synapse_harness import SynapseHarness, free_port, matrix_overrides, start_synapse

PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class MatrixStack:
    hs: SynapseHarness
    gateway: GatewayProcess
    settings: Settings
    database_url: str


@asynccontextmanager
async def matrix_stack(**extra: Any) -> AsyncIterator[MatrixStack]:
    """Synapse + one bridged gateway process on a private database and Redis prefix."""
    run = secrets.token_hex(4)
    db_name = f"city_bench_{run}"
    port = free_port()
    values: dict[str, Any] = {
        "city_env": "test",
        "database_url": f"{PG_BASE}/{db_name}",
        "redis_url": REDIS_URL,
        "city_redis_prefix": f"bench{run}:",
        "city_jwt_secret": secrets.token_urlsafe(32),
        "log_level": "WARNING",
        "log_format": "human",
        **matrix_overrides(port),
        **extra,
    }
    with tempfile.TemporaryDirectory(prefix="bench-synapse-") as tmp:
        hs = await start_synapse(Settings(_env_file=None, **values), data_dir=Path(tmp))  # type: ignore[call-arg]
        settings = hs.settings
        gw = GatewayProcess(settings)
        gw.port = port
        gw.base_url = f"http://127.0.0.1:{port}"
        gw.ws_url = f"ws://127.0.0.1:{port}"
        gw.http = httpx.AsyncClient(base_url=gw.base_url, timeout=30)
        try:
            await gw.start()

            async def bridge_ready() -> bool:
                checks = (await gw.http.get("/readyz")).json()["checks"]
                return bool(checks.get("synapse") == "ok")

            await wait_until(bridge_ready, timeout=60, interval=0.2)
            yield MatrixStack(hs, gw, settings, values["database_url"])
        finally:
            await gw.stop()
            await hs.stop()
            admin = await asyncpg.connect(f"{PG_BASE}/postgres")
            try:
                await admin.execute(f'drop database if exists "{db_name}" with (force)')
            finally:
                await admin.close()


class Syncer:
    """User B's /sync long-poll loop, noting when each message body first arrives."""

    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._since: str | None = None
        self._filter = json.dumps(
            {
                "presence": {"types": []},
                "account_data": {"types": []},
                "room": {
                    "timeline": {"types": ["m.room.message"], "limit": 50},
                    "state": {"types": []},
                    "ephemeral": {"types": []},
                },
            }
        )

    async def start(self) -> None:
        await self._sync(0)  # skip history
        self._task = asyncio.create_task(self._loop())

    async def _sync(self, timeout_ms: int) -> None:
        params = {"timeout": str(timeout_ms), "filter": self._filter}
        if self._since:
            params["since"] = self._since
        resp = await self._http.get("/_matrix/client/v3/sync", params=params)
        now = time.perf_counter()
        body = resp.json()
        self._since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                text = (event.get("content") or {}).get("body")
                if isinstance(text, str):
                    self.arrived.setdefault(text, now)

    async def _loop(self) -> None:
        while True:
            await self._sync(30_000)

    async def wait_for(self, body: str, timeout: float = 30) -> float:
        deadline = time.perf_counter() + timeout
        while body not in self.arrived:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{body!r} never reached /sync")
            await asyncio.sleep(0.0005)
        return self.arrived[body]

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        await self._http.aclose()


async def matrix_send(http: httpx.AsyncClient, token: str, room_id: str, body: str) -> None:
    resp = await http.put(
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
        headers={"Authorization": f"Bearer {token}"},
        json={"msgtype": "m.text", "body": body},
    )
    resp.raise_for_status()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "mean": statistics.fmean(ordered),
    }


async def run(samples: int) -> dict[str, dict[str, float]]:
    async with matrix_stack() as stack:
        hs, gw = stack.hs, stack.gateway
        alice = await hs.make_user("bench_alice")
        bob = await hs.make_user("bench_bob")
        alias = f"#city_general:{hs.server_name}"
        http = httpx.AsyncClient(base_url=hs.base_url, timeout=30)
        for user in (alice, bob):
            resp = await http.post(
                f"/_matrix/client/v3/join/{quote(alias)}",
                headers={"Authorization": f"Bearer {user.access_token}"},
                json={},
            )
            resp.raise_for_status()
        room_id = resp.json()["room_id"]
        syncer = Syncer(hs.base_url, bob.access_token)
        await syncer.start()
        city = gw.auth("u_bench", "Bench User")
        ws = await connect(f"{gw.ws_url}/ws/city/rooms/room_city_general?token={gw.token('u_ws')}")
        ws_arrived: dict[str, float] = {}

        async def read_ws() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("event") == "room.message":
                    ws_arrived.setdefault(frame["message"]["body"], time.perf_counter())

        reader = asyncio.create_task(read_ws())

        async def ws_wait(body: str) -> float:
            deadline = time.perf_counter() + 30
            while body not in ws_arrived:
                if time.perf_counter() > deadline:
                    raise TimeoutError(body)
                await asyncio.sleep(0.0005)
            return ws_arrived[body]

        results: dict[str, list[float]] = {
            "synapse": [],
            "city_to_matrix": [],
            "matrix_to_city": [],
            "post": [],
        }
        try:
            # Warm-up: ghost registered and joined, connections open, code paths hot.
            for i in range(10):
                body = f"warm {i} {secrets.token_hex(3)}"
                await gw.http.post(
                    "/city/rooms/room_city_general/messages", json={"body": body}, headers=city
                )
                await syncer.wait_for(body)
                body = f"warm-m {i} {secrets.token_hex(3)}"
                await matrix_send(http, alice.access_token, room_id, body)
                await ws_wait(body)
            # Interleaved, so a slow moment of the machine hits all three alike.
            for i in range(samples):
                body = f"base {i} {secrets.token_hex(3)}"
                t0 = time.perf_counter()
                await matrix_send(http, alice.access_token, room_id, body)
                results["synapse"].append((await syncer.wait_for(body)) - t0)

                body = f"c2m {i} {secrets.token_hex(3)}"
                t0 = time.perf_counter()
                resp = await gw.http.post(
                    "/city/rooms/room_city_general/messages", json={"body": body}, headers=city
                )
                assert resp.status_code == 201, resp.text
                results["post"].append(time.perf_counter() - t0)
                results["city_to_matrix"].append((await syncer.wait_for(body)) - t0)

                body = f"m2c {i} {secrets.token_hex(3)}"
                t0 = time.perf_counter()
                await matrix_send(http, alice.access_token, room_id, body)
                results["matrix_to_city"].append((await ws_wait(body)) - t0)
        finally:
            reader.cancel()
            await ws.close()
            await syncer.close()
            await http.aclose()
        return {k: summary([v * 1000 for v in vs]) for k, vs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    stats = asyncio.run(run(args.samples))
    base = stats["synapse"]["p95"]
    rows = []
    labels = {
        "synapse": "Synapse client → client (A sends, B's /sync)",
        "city_to_matrix": "City → Matrix (POST → B's /sync)",
        "matrix_to_city": "Matrix → City (A sends → city WebSocket)",
        "post": "(part of City → Matrix: the POST's own response time)",
    }
    for key, label in labels.items():
        s = stats[key]
        verdict = "" if key in ("synapse", "post") else (" ✔" if s["p95"] <= base + 50 else " ✘")
        delta = "—" if key == "post" else f"{s['p95'] - base:+.1f}{verdict}"
        rows.append(
            f"| {label} | {s['p50']:.1f} | {s['p95']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} |"
            f" {delta} |"
        )
    table = "\n".join(rows)
    body = f"""## Matrix bridge latency (`bench/matrix_latency.py`)

One Synapse {_synapse_version()} (SQLite) with the appservice registered and one
`city-gateway serve` process, same 2-core machine. {args.samples} samples per path, one
message at a time, the three paths interleaved; the Matrix reader is a long-poll
`/sync` (httpx), the city reader a room WebSocket.

| path | p50 ms | p95 ms | p99 ms | mean ms | p95 − Synapse p95 |
|---|---|---|---|---|---|
{table}

Target: each bridge path's p95 ≤ Synapse's p95 + 50 ms. City → Matrix includes
the city's own `POST` (auth, the message + feed + outbox statement, WebSocket
fanout), which runs while the outbox already sends; the machine is shared with
other test runs, so absolute numbers move between runs, the differences less.
"""
    write_section("matrix-latency", body)
    print(body)


def _synapse_version() -> str:
    try:
        from importlib.metadata import version

        return version("matrix-synapse")
    except Exception:
        return "(unknown version)"


if __name__ == "__main__":
    main()
