"""Outbox throughput across 10 rooms against raw Synapse sends at the same concurrency.

One Synapse (SQLite) with our appservice and one `city-gateway serve` process.

- Raw: 10 tasks, one per Matrix room, each sending its messages one after the other
  (the order a room needs) as an appservice ghost, straight to Synapse.
- Outbox: the same number of city messages queued in `matrix_outbox` across 10 city
  rooms (written by `MessageService`'s own statement while the gateway is stopped),
  then the gateway starts and drains them with `MATRIX_OUTBOX_CONCURRENCY=10`.

Both rates come from the Synapse timestamps of the first and last event, so start-up
time is not counted. Target: outbox / raw ≥ 0.8. Writes bench/RESULTS.md.

    .venv/bin/python bench/outbox_throughput.py [--per-room 50]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matrix_latency import matrix_stack
from bench.results import write_section
from bridge.storage import OutboxQueue
from gateway.core.ids import new_feed_event_id, new_message_id
from gateway.core.storage.messages import (
    AUTHOR_NAME,
    STORED,
    NewFeedEvent,
    NewMessage,
    insert_message,
    insert_statement,
)
from gateway.infra.db import create_pool
from tests.servers import wait_until

# The insert as the gateway runs it with the bridge on: the outbox row in the same statement.
QUEUED_INSERT = insert_statement(OutboxQueue().queue_statement(STORED, AUTHOR_NAME))

ROOMS = 10


async def _history(http: httpx.AsyncClient, room_id: str, headers: dict[str, str]) -> list[int]:
    """origin_server_ts of every m.room.message in the room."""
    stamps: list[int] = []
    params = {"dir": "f", "limit": "1000"}
    while True:
        resp = await http.get(
            f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", params=params, headers=headers
        )
        resp.raise_for_status()
        body = resp.json()
        stamps += [e["origin_server_ts"] for e in body["chunk"] if e["type"] == "m.room.message"]
        if not body["chunk"] or "end" not in body:
            return stamps
        params["from"] = body["end"]


def _rate(stamps: list[int]) -> float:
    span = (max(stamps) - min(stamps)) / 1000
    return (len(stamps) - 1) / span if span > 0 else float("inf")


async def run(per_room: int) -> dict[str, Any]:
    async with matrix_stack(matrix_outbox_concurrency=ROOMS) as stack:
        hs, gw = stack.hs, stack.gateway
        http = httpx.AsyncClient(base_url=hs.base_url, timeout=60)
        slugs = [f"tp{i}" for i in range(ROOMS)]
        for slug in slugs:
            resp = await gw.http.post(
                "/city/rooms", json={"name": slug, "slug": slug}, headers=gw.auth("u_admin")
            )
            resp.raise_for_status()
        # Warm-up through the bridge: every room mapped, every ghost registered and
        # joined, so both runs measure steady-state sending only.
        for i, slug in enumerate(slugs):
            resp = await gw.http.post(
                f"/city/rooms/room_city_{slug}/messages",
                json={"body": "warm-up"},
                headers=gw.auth(f"u_w{i}", f"Writer {i}"),
            )
            resp.raise_for_status()
        pool = await create_pool(stack.database_url, 4)

        async def drained() -> bool:
            return await pool.fetchval("select count(*) from matrix_outbox") == 0

        await wait_until(drained, timeout=60, interval=0.1)
        rooms = dict(
            await pool.fetch(
                "select slug, matrix_room_id from city_rooms where slug = any($1::text[])", slugs
            )
        )

        # --- raw Synapse sends, one sequential sender per room --------------------
        raw_rooms = []
        for i in range(ROOMS):
            room = await http.post(
                "/_matrix/client/v3/createRoom",
                headers=hs.as_headers,
                json={"preset": "public_chat"},
            )
            room.raise_for_status()
            room_id = room.json()["room_id"]
            ghost = hs.user_id(f"city_u_w{i}")
            joined = await http.post(
                f"/_matrix/client/v3/join/{quote(room_id)}",
                params={"user_id": ghost},
                headers=hs.as_headers,
                json={},
            )
            joined.raise_for_status()
            raw_rooms.append((room_id, ghost))

        async def raw_sender(room_id: str, ghost: str) -> None:
            for n in range(per_room):
                resp = await http.put(
                    f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"
                    f"raw{secrets.token_hex(8)}",
                    params={"user_id": ghost},
                    headers=hs.as_headers,
                    json={"msgtype": "m.text", "body": f"raw {n}"},
                )
                resp.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(raw_sender(r, g) for r, g in raw_rooms))
        raw_wall = time.perf_counter() - t0
        raw_stamps: list[int] = []
        for room_id, _ in raw_rooms:
            raw_stamps += await _history(http, room_id, hs.as_headers)

        # --- the outbox: queue while stopped, then drain ---------------------------
        await gw.stop()
        async with pool.acquire() as conn, conn.transaction():
            for n in range(per_room):
                for i, slug in enumerate(slugs):
                    mid = new_message_id()
                    body = f"outbox {n}"
                    await insert_message(
                        conn,
                        NewMessage(
                            id=mid, room_id=f"room_city_{slug}", body=body, author_user_id=f"u_w{i}"
                        ),
                        NewFeedEvent(
                            id=new_feed_event_id(),
                            kind="room_message",
                            payload={"body": body, "source": "city", "message_id": mid},
                        ),
                        queued=QUEUED_INSERT,
                        author_name=f"Writer {i}",
                    )
        gw.http = httpx.AsyncClient(base_url=gw.base_url, timeout=30)
        t0 = time.perf_counter()
        await gw.start()
        await wait_until(drained, timeout=600, interval=0.05)
        outbox_wall = time.perf_counter() - t0
        outbox_stamps: list[int] = []
        for slug in slugs:
            stamps = await _history(http, rooms[slug], hs.as_headers)
            outbox_stamps += stamps[1:]  # minus the warm-up message
        await pool.close()
        await http.aclose()
        total = per_room * ROOMS
        assert len(raw_stamps) == total, len(raw_stamps)
        assert len(outbox_stamps) == total, len(outbox_stamps)
        return {
            "total": total,
            "raw_rate": _rate(raw_stamps),
            "outbox_rate": _rate(outbox_stamps),
            "raw_wall": raw_wall,
            "outbox_wall": outbox_wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-room", type=int, default=50)
    args = parser.parse_args()
    r = asyncio.run(run(args.per_room))
    ratio = r["outbox_rate"] / r["raw_rate"]
    body = f"""## Matrix outbox throughput (`bench/outbox_throughput.py`)

One Synapse (SQLite) with the appservice and one `city-gateway serve` process on
the same 2-core machine; {r["total"]} messages over {ROOMS} rooms, {ROOMS} rooms at a
time (one in-order sender per room) in both runs. Rates from Synapse's
`origin_server_ts` of the first and last event (start-up excluded).

| sender | messages/s | wall s (incl. start-up for the outbox) |
|---|---|---|
| raw Synapse sends, 10 concurrent rooms | {r["raw_rate"]:.1f} | {r["raw_wall"]:.1f} |
| city outbox, `MATRIX_OUTBOX_CONCURRENCY=10` | {r["outbox_rate"]:.1f} | {r["outbox_wall"]:.1f} |

Ratio outbox / raw: **{ratio:.2f}**. Target: ≥ 0.8.
"""
    write_section("matrix-outbox", body)
    print(body)


if __name__ == "__main__":
    main()
