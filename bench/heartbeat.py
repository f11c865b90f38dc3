"""Presence heartbeat throughput: `POST /internal/matrix/presence/online` vs `GET /healthz`.

50 concurrent keep-alive connections (wrk) against one `city-gateway serve` process.
Heartbeats name 10,000 users round-robin with the internal service token, so after
the warm-up nearly every request is a plain renewal (one EVALSHA, no transition),
as in production where a tab beats every 20 s. The same server's `/healthz` is
measured in the same run: the ratio says how much of the framework's ceiling the
hottest endpoint keeps. Writes the "heartbeat" section of bench/RESULTS.md.

    .venv/bin/python bench/heartbeat.py [--seconds 10] [--connections 50] [--users 10000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.messages import wrk
from bench.results import write_section
from bench.server import bench_server

BEAT_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"user_id":"u_bench' .. (counter % USERS) .. '","device_id":"tab",'
            .. '"last_active_ago":' .. (counter % 1000) .. '}'
  return wrk.format("POST", nil, {["Content-Type"]="application/json",
                                  ["Authorization"]="Bearer TOKEN"}, body)
end
"""

TARGET_RATIO = 0.6
TARGET_P99_MS = 25.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/heartbeat.py needs wrk: apt-get install wrk")

    with bench_server() as server, tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "beat.lua"
        token = server.env["CITY_INTERNAL_TOKEN"]
        script.write_text(BEAT_SCRIPT.replace("TOKEN", token).replace("USERS", str(args.users)))
        url = server.base_url + "/internal/matrix/presence/online"
        health_url = server.base_url + "/healthz"
        wrk(url, 3, args.connections, str(script))  # warm-up: every user comes online
        wrk(health_url, 2, args.connections)
        beat = wrk(url, args.seconds, args.connections, str(script))
        health = wrk(health_url, args.seconds, args.connections)

    ratio = beat["rps"] / health["rps"]
    verdict = "met" if ratio >= TARGET_RATIO and beat["p99"] <= TARGET_P99_MS else "NOT met"
    body = f"""## Presence heartbeat throughput (`bench/heartbeat.py`)

One `city-gateway serve` process, {args.connections} keep-alive connections (wrk, 1 thread on
the same machine), {args.seconds} s each. Heartbeats with the internal token for
{args.users:,} users round-robin (each already online after the warm-up, so a request is
one EVALSHA; transitions add one PUBLISH, off the request path).

| endpoint | req/s | p50 ms | p99 ms | non-2xx |
|---|---|---|---|---|
| POST /internal/matrix/presence/online | {beat["rps"]:.0f} | {beat["p50"]:.2f} | {beat["p99"]:.2f} | {beat["errors"]:.0f} |
| GET /healthz | {health["rps"]:.0f} | {health["p50"]:.2f} | {health["p99"]:.2f} | {health["errors"]:.0f} |

Ratio heartbeat / healthz: **{ratio:.2f}**. Target: ≥ {TARGET_RATIO} and p99 ≤ {TARGET_P99_MS:.0f} ms
({verdict}).
"""
    write_section("heartbeat", body)
    print(body)


if __name__ == "__main__":
    main()
