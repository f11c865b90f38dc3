"""Matrix presence PUTs with 10,000 online city users and one Element user (issue 13).

One real Synapse (SQLite) with our appservice and one `city-gateway serve` process,
default Matrix presence settings (refresh 20 s, debounce 2 s) and a presence TTL of
120 s (one bench client needs about a minute for a first round of 10,000 heartbeats;
with the default 40 s the first users would expire before the last came online).
50 city users post once in #city_general (their ghosts are registered and join the
Matrix room); one Element user (matrix-nio) joins it; then 10,000 city users, those
50 among them, heartbeat through the real endpoint
(`POST /internal/matrix/presence/online`) and keep heartbeating every 30 s. Once Element sees the 50 ghosts online, the bridge's
`city_matrix_presence_sent_total` is read over three refresh periods (60 s).

Target: ≤ 50 Synapse presence PUTs per 20 s (only the 50 ghosts Element can see are
mirrored; before issue 13 every online ghost was refreshed: 10,000 per 20 s).

    .venv/bin/python bench/presence_mirror.py [--users 10000] [--visible 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.matrix_latency import matrix_stack
from bench.results import write_section

INTERNAL_TOKEN = "bench-internal-token-" + "x" * 32
REFRESH_SECONDS = 20.0
PERIODS = 3
BEAT_EVERY = 30.0
TTL_SECONDS = 120
TARGET_PER_PERIOD = 50
_SENT_RE = re.compile(r'^city_matrix_presence_sent_total\{reason="(\w+)"\} ([\d.e+]+)$', re.M)
_HIDDEN_RE = re.compile(r'^city_matrix_presence_hidden_total\{kind="(\w+)"\} ([\d.e+]+)$', re.M)
_ANNOUNCED_RE = re.compile(
    r'^city_presence_transitions_total\{from_status="offline",to_status="online"\} ([\d.]+)$',
    re.M,
)


def _counters(text: str, pattern: re.Pattern[str]) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(text)}


async def _beat_all(http: httpx.AsyncClient, users: list[str]) -> float:
    """One heartbeat per user, 50 at a time; the seconds it took."""
    headers = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    queue = list(users)
    started = time.monotonic()

    async def worker() -> None:
        while queue:
            body = {"user_id": queue.pop(), "device_id": "tab", "status": "online"}
            r = await http.post("/internal/matrix/presence/online", json=body, headers=headers)
            r.raise_for_status()

    await asyncio.gather(*(worker() for _ in range(50)))
    return time.monotonic() - started


def _busiest(samples: list[tuple[float, float]], span: float) -> float:
    """The most PUTs counted within any `span` seconds of the samples."""
    best = 0.0
    for i, (t0, c0) in enumerate(samples):
        inside = [c for t, c in samples[i:] if t - t0 <= span]
        best = max(best, inside[-1] - c0)
    return best


async def _wait(predicate: Any, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def run(users: int, visible: int) -> dict[str, Any]:
    async with matrix_stack(
        city_internal_token=INTERNAL_TOKEN, presence_ttl_seconds=TTL_SECONDS
    ) as stack:
        hs, gw = stack.hs, stack.gateway
        db = await asyncpg.connect(stack.database_url)
        everyone = [f"u_pm{i}" for i in range(users)]
        posters = everyone[:visible]
        try:
            # The 50 speak once in #city_general: their ghosts join the Matrix room.
            for user in posters:
                r = await gw.http.post(
                    "/city/rooms/room_city_general/messages",
                    json={"body": f"hello from {user}"},
                    headers=gw.auth(user, user),
                )
                r.raise_for_status()

            async def ghosts_joined() -> bool:
                n = await db.fetchval(
                    "select count(*) from matrix_memberships where matrix_user_id like '@city_u_pm%'"
                )
                return int(n) >= visible

            await _wait(ghosts_joined, "the posters' ghosts to join")

            member = await hs.make_user("bench_element")
            element = nio.AsyncClient(hs.base_url, member.user_id)
            element.restore_login(member.user_id, "BENCH", member.access_token)
            joined = await element.join(f"#city_general:{hs.server_name}")
            assert isinstance(joined, nio.JoinResponse), joined

            first_round = await _beat_all(gw.http, everyone)

            async def announced() -> bool:
                found = _ANNOUNCED_RE.search((await gw.http.get("/metrics")).text)
                return found is not None and float(found.group(1)) >= users

            await _wait(announced, "every transition to be announced")
            ghosts = [hs.user_id(f"city_{u}") for u in posters]

            async def element_sees_all() -> bool:
                for ghost in ghosts:
                    resp = await element.get_presence(ghost)
                    if not isinstance(resp, nio.PresenceGetResponse) or resp.presence != "online":
                        return False
                return True

            await _wait(element_sees_all, "Element to see the visible ghosts online")

            rounds: list[float] = []

            async def keep_beating() -> None:
                while True:
                    await asyncio.sleep(BEAT_EVERY)
                    rounds.append(await _beat_all(gw.http, everyone))

            beating = asyncio.create_task(keep_beating())
            try:
                before = (await gw.http.get("/metrics")).text
                load_before = os.getloadavg()
                started = time.monotonic()
                # The counter every second, for the busiest 20 s of the window.
                samples: list[tuple[float, float]] = []
                while (now := time.monotonic()) - started < REFRESH_SECONDS * PERIODS:
                    text = (await gw.http.get("/metrics")).text
                    samples.append((now, sum(_counters(text, _SENT_RE).values())))
                    await asyncio.sleep(1.0)
                elapsed = time.monotonic() - started
                after = (await gw.http.get("/metrics")).text
                load = os.getloadavg()
                still_online = await element_sees_all()
            finally:
                beating.cancel()
            sent_before, sent_after = _counters(before, _SENT_RE), _counters(after, _SENT_RE)
            hidden_after = _counters(after, _HIDDEN_RE)
            by_reason = {k: v - sent_before.get(k, 0.0) for k, v in sent_after.items()}
            ghosts_registered = await db.fetchval(
                "select count(*) from matrix_ghosts"
                " where registered_at is not null and city_user_id like 'u_pm%'"
            )
            rows = await db.fetchval(
                "select count(*) from matrix_ghosts where city_user_id like 'u_pm%'"
            )
            await element.close()
        finally:
            await db.close()
        return {
            "users": users,
            "visible": visible,
            "first_round": first_round,
            "renewal_rounds": rounds,
            "elapsed": elapsed,
            "by_reason": by_reason,
            "total": sum(by_reason.values()),
            "busiest": _busiest(samples, REFRESH_SECONDS),
            "sent_all": sum(sent_after.values()),
            "hidden": hidden_after,
            "registered": int(ghosts_registered),
            "rows": int(rows),
            "still_online": still_online,
            "load_before": load_before,
            "load": load,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--visible", type=int, default=50)
    args = parser.parse_args()
    r = asyncio.run(run(args.users, args.visible))
    per_period = r["total"] * REFRESH_SECONDS / r["elapsed"]
    met = r["busiest"] <= TARGET_PER_PERIOD
    reasons = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["by_reason"].items()) if v) or "none"
    hidden = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["hidden"].items())) or "none"
    load = " / ".join(f"{v:.2f}" for v in r["load"])
    renewals = ", ".join(f"{v:.1f} s" for v in r["renewal_rounds"]) or "none finished"
    load_before = " / ".join(f"{v:.2f}" for v in r["load_before"])
    body = f"""## Matrix presence that grows with Matrix, not the city (`bench/presence_mirror.py`)

One Synapse (SQLite) with the appservice and one `city-gateway serve` process on the
same machine, default Matrix presence settings (refresh 20 s, debounce 2 s),
presence TTL {TTL_SECONDS} s (so no user expires during one client's first round).
{r["visible"]} city users posted once in #city_general (their ghosts joined the Matrix
room), one Element user (matrix-nio) joined it, then {r["users"]:,} city users (the
{r["visible"]} among them) heartbeat through `POST /internal/matrix/presence/online`
(first round — every heartbeat a transition — {r["first_round"]:.1f} s; then a
renewal round every {BEAT_EVERY:.0f} s, {renewals}). Counted once
Element saw the {r["visible"]} ghosts online: the bridge's
`city_matrix_presence_sent_total` over {r["elapsed"]:.0f} s ({PERIODS} refresh periods).

| | value |
|---|---|
| Synapse presence PUTs in {r["elapsed"]:.0f} s | {r["total"]:.0f} ({reasons}) |
| PUTs per 20 s, average over the window | {per_period:.1f} |
| **PUTs in the busiest 20 s** (counter sampled every second) | **{r["busiest"]:.0f}** (target ≤ {TARGET_PER_PERIOD}: {"met" if met else "NOT met"}) |
| PUTs since start (transitions + first refreshes included) | {r["sent_all"]:.0f} |
| presence updates not sent (ghost hidden), since start | {hidden} |
| ghosts registered on Synapse / `matrix_ghosts` rows | {r["registered"]} / {r["rows"]} (of {r["users"]:,} online users) |
| Element still sees the {r["visible"]} ghosts online at the end | {"yes" if r["still_online"] else "NO"} |

Before issue 13 every online ghost was refreshed once per period: {r["users"]:,} PUTs
per 20 s for this city, and a ghost registered for each heartbeating user.
Machine load (1/5/15 min) at the start of the window {load_before}, at its end {load}
(Synapse, PostgreSQL, Redis, the gateway and the heartbeating client share the machine;
the PUT counts are counts, not timings — load stretches the heartbeat rounds, not them).
"""
    write_section("presence_mirror", body)
    print(body)


if __name__ == "__main__":
    main()
