"""Delivery latency of one room message to 1,000 and 5,000 WebSocket subscribers.

Starts its own `city-gateway serve` (own database and Redis prefix), opens N
sockets to one room, then posts messages one at a time over REST and records,
for each, the time from sending the POST until the room.message frame reached
the LAST subscriber's socket. Reports p50/p99 of that over the runs.

The subscribers are a minimal raw-socket WebSocket client (asyncio.Protocol)
so that the client side costs a few microseconds per frame; a full client
library per socket would measure the client, not the server. With `--deflate`
the clients offer permessage-deflate, as browsers do (the gateway declines it).

    .venv/bin/python bench/fanout.py [--sizes 1000,5000] [--runs 50] [--deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import secrets
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_section
from bench.server import BenchServer, bench_server

GENERAL = "room_city_general"


def run(coro: Any) -> Any:
    """asyncio.run on uvloop when installed: the clients must cost less than the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class RawSocket(asyncio.Protocol):
    """The least a WebSocket client can do: handshake, count text frames, answer pings."""

    def __init__(self, host: str, path: str, deflate: bool) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(secrets.token_bytes(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + (
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                if deflate
                else ""
            )
            + "\r\n"
        ).encode()
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.text_frames = 0
        self.last_text_at = 0.0
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(head.split(b"\r\n")[0].decode()))
                return
            self.upgraded = True
            self.open.set_result(None)
        while len(self.buffer) >= 2:
            opcode = self.buffer[0] & 0x0F
            length = self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length = struct.unpack_from("!H", self.buffer, 2)[0]
                offset = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length = struct.unpack_from("!Q", self.buffer, 2)[0]
                offset = 10
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            if opcode == 1:
                self.text_frames += 1
                self.last_text_at = now
            elif opcode == 9:
                self.send(0xA, payload)  # pong
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                if self.transport is not None:
                    self.transport.close()

    def send(self, opcode: int, payload: bytes) -> None:
        mask = secrets.token_bytes(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header = bytes([0x80 | opcode, 0x80 | len(payload)])  # short control frames only
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(header + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_sockets(
    port: int, paths: list[str], deflate: bool, batch: int = 200
) -> list[RawSocket]:
    loop = asyncio.get_running_loop()
    sockets: list[RawSocket] = []
    for i in range(0, len(paths), batch):

        async def one(path: str) -> RawSocket:
            _, proto = await loop.create_connection(
                lambda: RawSocket("127.0.0.1", path, deflate), "127.0.0.1", port
            )
            await asyncio.wait_for(proto.open, 30)
            return proto

        sockets += await asyncio.gather(*(one(p) for p in paths[i : i + batch]))
    return sockets


async def settle(sockets: list[RawSocket], quiet: float = 1.0, limit: float = 300) -> None:
    """Wait until no socket received a text frame for `quiet` seconds (join storm over)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet)
        newest = max(s.last_text_at for s in sockets)
        if time.perf_counter() - newest >= quiet:
            return


def room_paths(server: BenchServer, room_id: str, n: int, sockets_per_user: int) -> list[str]:
    tokens = {}
    paths = []
    for i in range(n):
        user = f"u_b{i // sockets_per_user}"
        if user not in tokens:
            tokens[user] = server.token(user)
        paths.append(f"/ws/city/rooms/{room_id}?token={tokens[user]}")
    return paths


async def measure(server: BenchServer, n: int, runs: int, deflate: bool) -> dict[str, float]:
    port = int(server.base_url.rsplit(":", 1)[1])
    # 50 sockets per user: what is measured is frames to sockets, and few distinct
    # users keep the join announcements (O(sockets) each) from dominating set-up.
    t0 = time.perf_counter()
    sockets = await open_sockets(port, room_paths(server, GENERAL, n, 50), deflate)
    connect_s = time.perf_counter() - t0
    await settle(sockets)
    latencies: list[float] = []
    median_socket: list[float] = []
    headers = {"Authorization": f"Bearer {server.token('u_poster')}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        await http.post(f"/city/rooms/{GENERAL}/messages", json={"body": "warm-up"})
        await settle(sockets, quiet=0.5)
        for run in range(runs):
            before = [s.text_frames for s in sockets]
            start = time.perf_counter()
            response = await http.post(
                f"/city/rooms/{GENERAL}/messages", json={"body": f"bench message {run}"}
            )
            response.raise_for_status()
            deadline = time.monotonic() + 30
            while any(s.text_frames == b for s, b in zip(sockets, before, strict=True)):
                if time.monotonic() > deadline:
                    raise RuntimeError("a subscriber never got the message")
                await asyncio.sleep(0.0005)
            arrivals = sorted(s.last_text_at - start for s in sockets)
            latencies.append(arrivals[-1] * 1000)
            median_socket.append(arrivals[len(arrivals) // 2] * 1000)
            await asyncio.sleep(0.05)
    for s in sockets:
        if s.transport is not None:
            s.transport.close()
    latencies.sort()
    return {
        "n": n,
        "connect_s": connect_s,
        "p50_last": statistics.median(latencies),
        "p99_last": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_last": latencies[-1],
        "p50_median": statistics.median(median_socket),
    }


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--deflate", choices=["off", "on", "both"], default="both")
    args = parser.parse_args()
    raise_nofile()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.deflate]
    rows = []
    for deflate in modes:
        for n in (int(x) for x in args.sizes.split(",")):
            # A fresh server per size: no leftovers from the previous size.
            with bench_server(ws_send_queue_frames="256") as server:
                result = run(measure(server, n, args.runs, deflate))
            result["deflate"] = deflate
            rows.append(result)
            print(result, flush=True)
    table = "\n".join(
        f"| {int(r['n']):,} | {'on' if r['deflate'] else 'off'} | {r['p50_last']:.1f} | "
        f"{r['p99_last']:.1f} | {r['max_last']:.1f} | {r['p50_median']:.1f} | "
        f"{r['connect_s']:.1f} |"
        for r in rows
    )
    write_section(
        "ws-fanout",
        f"""## Room fanout: one message to N WebSocket subscribers (`bench/fanout.py`)

One `city-gateway serve` process; N sockets in one room (50 per user), raw-socket
clients in one other process on the same 2-core machine. Per run: time from
sending `POST /city/rooms/{{id}}/messages` (which stores the message first) until
the `room.message` frame reached the **last** subscriber; {args.runs} runs per row.
"deflate on" = clients offered permessage-deflate, as browsers do; the gateway
declines it (`ws_per_message_deflate=False`), so both rows send plain frames.

| subscribers | deflate | p50 last ms | p99 last ms | max ms | p50 median-socket ms | connect s |
|---|---|---|---|---|---|---|
{table}

Machine load (1/5/15 min) when the run ended: {_load()} (other work shares these 2 cores).

Targets: p99 to the last subscriber ≤ 60 ms (1,000) and ≤ 250 ms (5,000).
""",
    )
    print(f"written to bench/RESULTS.md ({os.path.basename(__file__)})")


if __name__ == "__main__":
    main()
