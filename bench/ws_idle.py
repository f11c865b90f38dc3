"""Memory of 10,000 idle room WebSockets held by one gateway process.

Starts its own `city-gateway serve` (own database and Redis prefix; the file
descriptor limit is raised to the hard limit first, the server inherits it),
creates 100 rooms, opens N sockets spread over them (100 distinct users per
room, every user distinct), waits until the join announcements are over, and
reads the server's RSS from /proc. The clients are the raw sockets of
bench/fanout.py in this process, and answer the server's keep-alive pings.

    .venv/bin/python bench/ws_idle.py [--sockets 10000] [--deflate both]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fanout import open_sockets, raise_nofile, run, settle
from bench.results import write_section
from bench.server import BenchServer, bench_server

ROOMS = 100


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def make_rooms(server: BenchServer) -> list[str]:
    headers = {"Authorization": f"Bearer {server.token('u_admin')}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        ids = [r["id"] for r in (await http.get("/city/rooms", params={"limit": 500})).json()]
        for i in range(ROOMS - len(ids)):
            body = {"name": f"Bench {i}", "slug": f"bench-{i}"}
            response = await http.post("/city/rooms", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids[:ROOMS]


async def measure(server: BenchServer, n: int, deflate: bool) -> dict[str, float]:
    port = int(server.base_url.rsplit(":", 1)[1])
    rooms = await make_rooms(server)
    await asyncio.sleep(1)
    baseline = rss_mb(server.pid)
    paths = [
        f"/ws/city/rooms/{rooms[i % ROOMS]}?token={server.token(f'u_idle{i}')}" for i in range(n)
    ]
    started = time.perf_counter()
    sockets = await open_sockets(port, paths, deflate)
    connect_s = time.perf_counter() - started
    await settle(sockets, quiet=2.0)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        listed = (await http.get("/city/rooms", params={"limit": ROOMS})).json()
    online = sum(r["members_online"] for r in listed)
    peak = rss_mb(server.pid)
    alive = sum(1 for s in sockets if s.transport is not None and not s.transport.is_closing())
    for s in sockets:
        if s.transport is not None:
            s.transport.close()
    return {
        "n": n,
        "deflate": deflate,
        "baseline_mb": baseline,
        "rss_mb": peak,
        "per_socket_kb": (peak - baseline) * 1024 / n,
        "connect_s": connect_s,
        "alive": alive,
        "members_online": online,
    }


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--deflate", choices=["off", "on", "both"], default="both")
    args = parser.parse_args()
    limit = raise_nofile()
    if limit < args.sockets + 500:
        raise SystemExit(f"file descriptor hard limit {limit} is too low for {args.sockets}")
    rows = []
    for deflate in {"off": [False], "on": [True], "both": [False, True]}[args.deflate]:
        with bench_server() as server:
            result = run(measure(server, args.sockets, deflate))
        rows.append(result)
        print(result, flush=True)
    table = "\n".join(
        f"| {int(r['n']):,} | {'on' if r['deflate'] else 'off'} | {r['baseline_mb']:.0f} | "
        f"{r['rss_mb']:.0f} | {r['per_socket_kb']:.1f} | {int(r['alive']):,} | "
        f"{int(r['members_online']):,} | {r['connect_s']:.1f} |"
        for r in rows
    )
    write_section(
        "ws-idle",
        f"""## Idle room WebSockets held by one process (`bench/ws_idle.py`)

One `city-gateway serve` process; {ROOMS} rooms, every socket a distinct user, raw-socket
clients in another process. RSS of the server process (VmRSS) before and after.

| sockets | deflate | RSS before MB | RSS after MB | KB per socket | still open | members_online sum | connect s |
|---|---|---|---|---|---|---|---|
{table}

Machine load (1/5/15 min) when the run ended: {_load()} (other work shares these 2 cores).

Target: RSS ≤ 1 GB with 10,000 sockets.
""",
    )


if __name__ == "__main__":
    main()
