"""`GET /city/rooms` with 100 rooms and 100,000 users online.

Starts its own `city-gateway serve` (own database and Redis prefix), creates 100
rooms, and records 100,000 online users (1,000 per room) in Redis the way 20
other gateway processes holding 5,000 sockets each would: through
`RoomMembers` (the same Lua that the gateway runs), with a lease long enough
to outlive the run. 100,000 real sockets would need ten processes' worth of
memory; what `GET /city/rooms` reads is exactly these records. Then it calls
the list (and one room page) sequentially over one keep-alive connection.

    .venv/bin/python bench/rooms_list.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import run
from bench.results import write_section
from bench.server import BenchServer, bench_server
from bench.ws_idle import ROOMS, make_rooms
from gateway.realtime.room_members import RoomMembers

USERS = 100_000
PROCESSES = 20


async def fill(server: BenchServer, rooms: list[str]) -> None:
    redis = aioredis.from_url(server.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    per_process = USERS // PROCESSES
    try:
        for p in range(PROCESSES):
            users = range(p * per_process, (p + 1) * per_process)
            entries = [(rooms[u % len(rooms)], f"u_online{u}") for u in users]
            members = RoomMembers(
                redis,
                prefix=server.env["CITY_REDIS_PREFIX"],
                process_id=f"benchfake{p}",
                lease_seconds=3600,
                local_members=lambda e=entries: e,  # type: ignore[misc]
                local_counts=lambda ids: dict.fromkeys(ids, 0),
                on_gone=lambda room, user: None,
            )
            await members.start()  # registers the process with its pairs
            await members.detach()
    finally:
        await redis.aclose()


async def clean(server: BenchServer) -> None:
    redis = aioredis.from_url(server.env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        async for key in redis.scan_iter(match=server.env["CITY_REDIS_PREFIX"] + "*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def measure(server: BenchServer, requests: int) -> dict[str, float]:
    rooms = await make_rooms(server)
    started = time.perf_counter()
    await fill(server, rooms)
    fill_s = time.perf_counter() - started
    timings: dict[str, list[float]] = {"list": [], "page": []}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        listed = (await http.get("/city/rooms", params={"limit": ROOMS})).json()
        online = sum(r["members_online"] for r in listed)
        for _ in range(50):  # warm-up
            await http.get("/city/rooms", params={"limit": ROOMS})
        for _ in range(requests):
            t0 = time.perf_counter()
            response = await http.get("/city/rooms", params={"limit": ROOMS})
            timings["list"].append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
        for _ in range(requests // 2):
            t0 = time.perf_counter()
            response = await http.get(f"/city/rooms/{rooms[5]}")
            timings["page"].append((time.perf_counter() - t0) * 1000)
            response.raise_for_status()
        t0 = time.perf_counter()
        for _ in range(200):
            await http.get("/healthz")
        healthz = (time.perf_counter() - t0) * 1000 / 200
    # The same requests from wrk (C, one connection): the server's own latency
    # without the Python client's ~2 ms per request.
    wrk_list = await asyncio.to_thread(wrk_latency, f"{server.base_url}/city/rooms?limit={ROOMS}")
    wrk_health = await asyncio.to_thread(wrk_latency, f"{server.base_url}/healthz")
    return {
        "wrk_list_p50": wrk_list[0],
        "wrk_list_p99": wrk_list[1],
        "wrk_healthz_p50": wrk_health[0],
        "online": online,
        "rooms": len(listed),
        "fill_s": fill_s,
        "list_p50": statistics.median(timings["list"]),
        "list_p99": percentile(timings["list"], 0.99),
        "page_p50": statistics.median(timings["page"]),
        "page_p99": percentile(timings["page"], 0.99),
        "healthz_mean": healthz,
    }


def wrk_latency(url: str, seconds: int = 5) -> tuple[float, float]:
    """(p50, p99) in ms of sequential requests over one connection, measured by wrk."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return _wrk_ms(out, "50%"), _wrk_ms(out, "99%")


def _wrk_ms(out: str, label: str) -> float:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
    if match is None:
        raise RuntimeError(f"no {label} latency in wrk output:\n{out}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with bench_server() as server:
        try:
            r = run(measure(server, args.requests))
        finally:
            asyncio.run(clean(server))
    print(r, flush=True)
    write_section(
        "rooms-list",
        f"""## `GET /city/rooms` with {int(r["rooms"])} rooms and {int(r["online"]):,} users online (`bench/rooms_list.py`)

One `city-gateway serve` process; `members_online` comes from one Lua call
(`HLEN` of each room's member hash) whatever the number of users. Users are
membership records of 20 simulated gateway processes (5,000 each), written with
the gateway's own `RoomMembers` in {r["fill_s"]:.1f} s. Sequential requests over
one keep-alive connection (httpx), {args.requests} for the list.

| request | p50 ms | p99 ms |
|---|---|---|
| `GET /city/rooms?limit=100` | {r["list_p50"]:.2f} | {r["list_p99"]:.2f} |
| `GET /city/rooms/{{id}}` (50 messages) | {r["page_p50"]:.2f} | {r["page_p99"]:.2f} |
| `GET /healthz` (mean, same client) | {r["healthz_mean"]:.2f} | |

The same list from wrk over one connection (no Python client in the way):
p50 **{r["wrk_list_p50"]:.2f} ms**, p99 {r["wrk_list_p99"]:.2f} ms (`/healthz`: p50 {r["wrk_healthz_p50"]:.2f} ms).

Machine load (1/5/15 min) when the run ended: {_load()} (other work shares these 2 cores).

Target: p50 ≤ 5 ms for the list.
""",
    )


if __name__ == "__main__":
    main()
