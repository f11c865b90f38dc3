"""Capacity model: from the measured per-process figures to a city of 1,000,000 online.

Reads the figures from bench/RESULTS.md (each with the section it came from, so a
re-run of a bench updates the model) and one figure that is not a bench of ours
(Synapse's presence PUTs/s, docs/synapse-workers.md); takes the load assumptions
as options; prints the figures, the assumptions and, for every step of online users
× messages/s, what to deploy (gateway processes, Redis shards, PostgreSQL, Synapse
workers, NATS) and which limit binds first. The table in docs/scaling.md is this
script's output:

    .venv/bin/python bench/capacity_model.py            # defaults of docs/scaling.md
    .venv/bin/python bench/capacity_model.py --help     # every assumption

How a row is sized: every resource that scales out (gateway processes, Redis shards,
PostgreSQL replicas, Synapse event persisters) gets the smallest count that keeps
its utilisation at or under `--target`; resources there is exactly one of (the
PostgreSQL primary, Synapse's presence writer and appservice sender, the Redis slot
of room membership, one presence bucket, a JetStream stream) have the utilisation
the load gives them. "Binds first" is the limit with the highest utilisation in
that deployment: the one that runs out first as the load grows. Over 100 % (✗)
means no number of boxes fixes it: the design has to change there.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
SYNAPSE_WORKERS_DOC = ROOT / "docs" / "synapse-workers.md"

# The feed's retention decision (docs/data-retention.md): batched deletes are a
# small steady cost below ~1,000 msgs/s sustained; above, daily partitions.
FEED_PARTITION_ABOVE_MSGS = 1_000
FEED_KEEP_DAYS = 30
INBOX_KEEP_DAYS = 1
# Room members: a lease tick every WS_MEMBER_LEASE_SECONDS / 12 (2.5 s) per process;
# presence sweep every PRESENCE_SWEEP_INTERVAL_SECONDS (0.5 s) per process and bucket.
LEASE_TICK_S = 2.5
SWEEP_INTERVAL_S = 0.5
# Scripts on the membership slot per socket: admission, pair added, pair removed,
# socket released (docs/realtime-rooms.md, "Limits" and "members_online").
MEMBERSHIP_SCRIPTS_PER_SOCKET = 4
# A Redis Cluster has at least three masters.
CLUSTER_MIN_MASTERS = 3
MAX_SEARCH = 100_000


# --------------------------------------------------------------------------- parsing


class FigureError(ValueError):
    """A figure the model needs is not where it should be in RESULTS.md."""


@dataclass(frozen=True)
class Figure:
    key: str
    value: float
    unit: str
    source: str  # "RESULTS.md: <section>" or a doc
    how: str  # which cell / sentence


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def number(text: str) -> float:
    match = _NUMBER.search(text.replace("**", ""))
    if match is None:
        raise FigureError(f"no number in {text!r}")
    return float(match.group(0).replace(",", ""))


def sections(text: str) -> dict[str, str]:
    """`<!-- name:start -->…<!-- name:end -->` blocks of RESULTS.md by name."""
    pattern = re.compile(r"<!-- ([\w-]+):start -->(.*?)<!-- \1:end -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


def tables(body: str) -> list[list[list[str]]]:
    """Markdown tables of a section: rows of stripped cells, separator rows dropped."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*body.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


class Results:
    """Figures read out of bench/RESULTS.md (and one doc), each with its source."""

    def __init__(self, results_text: str, synapse_doc_text: str = "") -> None:
        self.sections = sections(results_text)
        self.synapse_doc = synapse_doc_text
        self.figures: list[Figure] = []

    def section(self, name: str) -> str:
        if name not in self.sections:
            raise FigureError(f"bench/RESULTS.md has no section {name!r}")
        return self.sections[name]

    def cell(self, name: str, column: str, row: Sequence[str], *, header: str = "") -> float:
        """The number in `column` of the first row whose leading cells equal `row`,
        in the first table of section `name` whose header has a cell containing
        `header` (default: `column`)."""
        want = header or column
        for table in tables(self.section(name)):
            head = table[0]
            if not any(want in h for h in head):
                continue
            index = next(i for i, h in enumerate(head) if column in h)
            for cells in table[1:]:
                lead = [c.replace("**", "").strip() for c in cells[: len(row)]]
                if lead == list(row) and index < len(cells):
                    return number(cells[index])
        raise FigureError(f"section {name!r}: no row {row!r} with column {column!r}")

    def row_numbers(self, name: str, first: str) -> list[float]:
        for table in tables(self.section(name)):
            for cells in table:
                if cells[0].replace("**", "").strip() == first:
                    return [number(c) for c in cells[1:] if _NUMBER.search(c)]
        raise FigureError(f"section {name!r}: no row starting {first!r}")

    def sentence(self, name: str, pattern: str) -> float:
        match = re.search(pattern, self.section(name), re.S)
        if match is None:
            raise FigureError(f"section {name!r}: nothing matches {pattern!r}")
        return number(match.group(1))

    def add(self, key: str, value: float, unit: str, source: str, how: str) -> float:
        self.figures.append(Figure(key, value, unit, source, how))
        return value


@dataclass(frozen=True)
class Measured:
    """Per-process and per-server figures the model uses (all measured, except where
    `source` names a doc)."""

    post_per_s: float  # POST message req/s, one process
    healthz_per_s: float  # GET /healthz req/s, same run (messages)
    heartbeat_per_s: float  # heartbeat req/s, one process
    heartbeat_healthz_per_s: float
    fanout_socket_ms: float  # marginal ms per socket of a room frame (1,000 → 5,000)
    fanout_1k_p50_ms: float
    fanout_5k_p50_ms: float
    socket_kb: float  # RSS per idle socket, deflate off
    rss_base_mb: float
    rss_10k_mb: float
    room_list_ms: float  # GET /city/rooms, 100 rooms, 100k online (wrk p50)
    room_page_ms: float  # GET /city/rooms/{id} p50, minus the Python client's overhead
    outbox_per_s: float  # city outbox → Synapse, messages/s
    synapse_sends_per_s: float  # raw Synapse sends, messages/s (one Synapse, SQLite)
    heartbeat_redis_us: float  # Redis CPU per heartbeat EVALSHA (worst of the table)
    post_redis_ms: float  # Redis CPU per POST (rate limit + publish), workers bench
    post_gateway_ms: float  # gateway CPU per POST, workers bench
    post_pg_ms: float  # PostgreSQL CPU per POST (message + feed + outbox statement)
    history_page_ms: float  # room newest 50 at 10M rows, p50
    feed_page_ms: float  # feed newest 20 at 10M rows, p50
    room_row_bytes: float  # city_room_messages bytes per message incl. indexes
    feed_row_bytes: float
    inbox_row_bytes: float
    search_mean_ms: float  # SearchService.search, mean over all queries, 1M messages
    search_p50_ms: float
    synapse_presence_puts_per_s: float  # docs/synapse-workers.md (issue 13)
    presence_puts_per_ghost_refresh: float = 1.0  # presence-mirror bench when present


def read_measured(results_text: str, synapse_doc_text: str) -> tuple[Measured, list[Figure]]:
    r = Results(results_text, synapse_doc_text)
    res = "RESULTS.md: "

    post = r.add(
        "post_per_s",
        r.cell("messages", "req/s", ["POST message"]),
        "req/s",
        res + "messages",
        "POST message, one process",
    )
    healthz = r.add(
        "healthz_per_s",
        r.cell("messages", "req/s", ["GET /healthz"]),
        "req/s",
        res + "messages",
        "GET /healthz, same run",
    )
    hb = r.add(
        "heartbeat_per_s",
        r.cell("heartbeat", "req/s", ["POST /internal/matrix/presence/online"]),
        "req/s",
        res + "heartbeat",
        "heartbeat renewals, one process",
    )
    hb_healthz = r.add(
        "heartbeat_healthz_per_s",
        r.cell("heartbeat", "req/s", ["GET /healthz"]),
        "req/s",
        res + "heartbeat",
        f"GET /healthz, same run (heartbeat/healthz = {hb / r.cell('heartbeat', 'req/s', ['GET /healthz']):.2f})",
    )
    f1 = r.add(
        "fanout_1k_p50_ms",
        r.cell("ws-fanout", "p50 last ms", ["1,000", "off"]),
        "ms",
        res + "ws-fanout",
        "1,000 sockets, p50 to the last one",
    )
    f5 = r.add(
        "fanout_5k_p50_ms",
        r.cell("ws-fanout", "p50 last ms", ["5,000", "off"]),
        "ms",
        res + "ws-fanout",
        "5,000 sockets, p50 to the last one",
    )
    per_socket = r.add(
        "fanout_socket_ms",
        (f5 - f1) / 4000,
        "ms/socket",
        res + "ws-fanout",
        "(p50 5,000 − p50 1,000) / 4,000: marginal cost of one more socket",
    )
    kb = r.add(
        "socket_kb",
        r.cell("ws-idle", "KB per socket", ["10,000", "off"]),
        "KB",
        res + "ws-idle",
        "10,000 idle sockets, deflate off",
    )
    rss_base = r.add(
        "rss_base_mb",
        r.cell("ws-idle", "RSS before MB", ["10,000", "off"]),
        "MB",
        res + "ws-idle",
        "RSS before the sockets",
    )
    rss_10k = r.add(
        "rss_10k_mb",
        r.cell("ws-idle", "RSS after MB", ["10,000", "off"]),
        "MB",
        res + "ws-idle",
        "RSS with 10,000 sockets",
    )
    room_list = r.add(
        "room_list_ms",
        r.sentence("rooms-list", r"wrk over one connection.*?p50 \*\*([\d.]+) ms"),
        "ms",
        res + "rooms-list",
        "GET /city/rooms (100 rooms, 100,000 online), wrk p50, one connection",
    )
    page_httpx = r.cell("rooms-list", "p50 ms", ["`GET /city/rooms/{id}` (50 messages)"])
    healthz_httpx = r.cell("rooms-list", "p50 ms", ["`GET /healthz` (mean, same client)"])
    healthz_wrk = r.sentence("rooms-list", r"`/healthz`: p50 ([\d.]+) ms")
    page = r.add(
        "room_page_ms",
        page_httpx - (healthz_httpx - healthz_wrk),
        "ms",
        res + "rooms-list",
        f"GET /city/rooms/{{id}} p50 {page_httpx} − httpx overhead "
        f"({healthz_httpx} − {healthz_wrk} on /healthz)",
    )
    outbox = r.add(
        "outbox_per_s",
        r.cell("matrix-outbox", "messages/s", ["city outbox, `MATRIX_OUTBOX_CONCURRENCY=10`"]),
        "msgs/s",
        res + "matrix-outbox",
        "city outbox, 10 rooms in parallel",
    )
    raw = r.add(
        "synapse_sends_per_s",
        r.cell("matrix-outbox", "messages/s", ["raw Synapse sends, 10 concurrent rooms"]),
        "msgs/s",
        res + "matrix-outbox",
        f"raw Synapse sends, one Synapse on SQLite (outbox/raw = {outbox / r.cell('matrix-outbox', 'messages/s', ['raw Synapse sends, 10 concurrent rooms']):.2f})",
    )
    abuse = r.row_numbers("abuse", "µs per heartbeat")
    hb_redis = r.add(
        "heartbeat_redis_us",
        max(abuse),
        "µs",
        res + "abuse",
        f"Redis usec_per_call per heartbeat, worst of {', '.join(f'{v:g}' for v in abuse)}",
    )
    load = ["POST message", "1"]
    post_redis = r.add(
        "post_redis_ms",
        r.cell("workers", "redis ms/req", load),
        "ms",
        res + "workers",
        "Redis CPU per POST, one worker (rate-limit EVALSHA + publish)",
    )
    post_gw = r.add(
        "post_gateway_ms",
        r.cell("workers", "gateway ms/req", load),
        "ms",
        res + "workers",
        "gateway CPU per POST, one worker",
    )
    post_pg = r.add(
        "post_pg_ms",
        r.cell("workers", "postgres ms/req", load),
        "ms",
        res + "workers",
        "PostgreSQL CPU per POST (message + feed + outbox in one statement)",
    )
    hist = r.add(
        "history_page_ms",
        r.cell("history", "p50 ms", ["room newest 50 (room ∝ size)"]),
        "ms",
        res + "history",
        "room newest 50 at 10M messages, p50",
    )
    feed = r.add(
        "feed_page_ms",
        r.cell("history", "p50 ms", ["feed newest 20"]),
        "ms",
        res + "history",
        "feed newest 20 at 10M events, p50",
    )
    n_msgs = r.sentence("history", r"([\d,]+) messages \+")
    room_mb = r.sentence("history", r"`city_room_messages` ([\d.]+) MB")
    feed_mb = r.sentence("history", r"`city_feed_events` ([\d.]+) MB")
    inbox_rows = r.sentence("history", r"`matrix_inbox` with ([\d,]+) rows")
    inbox_mb = r.sentence("history", r"`matrix_inbox` with [\d,]+ rows.*?\(([\d.]+) MB\)")
    room_b = r.add(
        "room_row_bytes",
        room_mb * 1e6 / n_msgs,
        "B",
        res + "history",
        f"city_room_messages {room_mb:g} MB / {n_msgs:,.0f} rows (with indexes)",
    )
    feed_b = r.add(
        "feed_row_bytes",
        feed_mb * 1e6 / n_msgs,
        "B",
        res + "history",
        f"city_feed_events {feed_mb:g} MB / {n_msgs:,.0f} rows",
    )
    inbox_b = r.add(
        "inbox_row_bytes",
        inbox_mb * 1e6 / inbox_rows,
        "B",
        res + "history",
        f"matrix_inbox {inbox_mb:g} MB / {inbox_rows:,.0f} rows",
    )
    s_mean = r.add(
        "search_mean_ms",
        r.sentence("search", r"Mean of all: ([\d.]+) ms"),
        "ms",
        res + "search",
        "SearchService.search, mean of all queries, 1M messages",
    )
    s_p50 = r.add(
        "search_p50_ms",
        r.cell("search", "p50 ms", ["all"]),
        "ms",
        res + "search",
        "p50 of all queries",
    )
    puts = re.search(r"about ([\d,]+) presence PUTs/s", synapse_doc_text)
    if puts is None:
        raise FigureError("docs/synapse-workers.md: no 'about N presence PUTs/s'")
    syn_puts = r.add(
        "synapse_presence_puts_per_s",
        number(puts.group(1)),
        "PUTs/s",
        "docs/synapse-workers.md (issue 13)",
        "one Synapse presence writer",
    )
    per_ghost = 1.0
    mirror = next((n for n in ("presence-mirror", "presence_mirror") if n in r.sections), None)
    if mirror is not None:
        per_ghost = _mirror_puts_per_ghost(r, mirror)
    measured = Measured(
        post_per_s=post,
        healthz_per_s=healthz,
        heartbeat_per_s=hb,
        heartbeat_healthz_per_s=hb_healthz,
        fanout_socket_ms=per_socket,
        fanout_1k_p50_ms=f1,
        fanout_5k_p50_ms=f5,
        socket_kb=kb,
        rss_base_mb=rss_base,
        rss_10k_mb=rss_10k,
        room_list_ms=room_list,
        room_page_ms=page,
        outbox_per_s=outbox,
        synapse_sends_per_s=raw,
        heartbeat_redis_us=hb_redis,
        post_redis_ms=post_redis,
        post_gateway_ms=post_gw,
        post_pg_ms=post_pg,
        history_page_ms=hist,
        feed_page_ms=feed,
        room_row_bytes=room_b,
        feed_row_bytes=feed_b,
        inbox_row_bytes=inbox_b,
        search_mean_ms=s_mean,
        search_p50_ms=s_p50,
        synapse_presence_puts_per_s=syn_puts,
        presence_puts_per_ghost_refresh=per_ghost,
    )
    return measured, r.figures


def _mirror_puts_per_ghost(r: Results, name: str) -> float:
    """PUTs per visible ghost per refresh, from the presence-mirror bench if it says
    "N ... PUTs ... per 20 s" and "M ... visible" (else 1, the design)."""
    body = r.section(name)
    puts = re.search(r"([\d,]+)\s*(?:Synapse\s+)?(?:presence\s+)?PUTs", body)
    visible = re.search(r"([\d,]+)\s+(?:of them|visible|city users in (?:the|one) room)", body)
    ratio = (
        number(puts.group(1)) / number(visible.group(1))
        if puts is not None and visible is not None and number(visible.group(1)) > 0
        else 0.0
    )
    if not 0 < ratio <= 10:
        r.add(
            "presence_puts_per_ghost_refresh",
            1.0,
            "PUTs",
            f"RESULTS.md: {name} (not parsed; the design's 1 per refresh)",
            "per visible ghost per 20 s",
        )
        return 1.0
    assert puts is not None and visible is not None
    return r.add(
        "presence_puts_per_ghost_refresh",
        max(1.0, ratio),
        "PUTs",
        f"RESULTS.md: {name}",
        f"{puts.group(1)} PUTs / {visible.group(1)} visible ghosts per refresh (at least 1)",
    )


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Assumptions:
    heartbeat_s: float = 20.0
    devices_per_user: float = 1.0
    in_room_share: float = 0.5
    room_online: float = 50.0
    presence_socket_share: float = 0.0
    matrix_visible_share: float = 0.02
    presence_refresh_s: float = 20.0
    session_minutes: float = 30.0
    room_lists_per_hour: float = 2.0
    history_pages_per_hour: float = 6.0
    feed_pages_per_hour: float = 2.0
    searches_per_hour: float = 0.5
    bridged_share: float = 1.0
    bridge_cost_factor: float = 1.0
    target: float = 0.7
    process_memory_mb: float = 2048.0
    min_processes: int = 2
    presence_buckets: int = 16
    min_shards: int = 1
    redis_small_op_us: float = 10.0
    membership_op_us: float | None = None  # default: the heartbeat script's cost
    pg_primary_cores: float = 32.0
    pg_replica_cores: float = 16.0
    synapse_events_per_s: float | None = None  # default: measured raw Synapse sends
    synapse_presence_puts_per_s: float | None = None  # default: docs figure
    as_txn_events: float = 100.0
    as_txn_ms: float = 50.0
    nats_ack_ms: float = 1.0
    nats_stream_per_s: float = 25_000.0


@dataclass(frozen=True)
class Limit:
    name: str
    load: float  # in units of `capacity`
    capacity: float  # of the deployed count
    scales: bool  # True: sized by count; False: exactly one of it

    @property
    def utilisation(self) -> float:
        return self.load / self.capacity if self.capacity > 0 else math.inf


@dataclass
class Row:
    online: int
    msgs: float
    heartbeats: float
    processes: int
    gateway_bound: str
    gateway_cpu: float  # cores
    cpu_terms: dict[str, float]
    sockets: float
    sockets_per_process_cap: float
    heartbeat_per_process_cap: float
    shards: int
    redis_max_shard: float  # cores on the busiest shard
    redis_terms: dict[str, float]
    redis_ops: float  # commands and scripts per second, all shards
    membership_load: float
    bucket_load: float
    pg_write_cores: float
    pg_rows: float  # rows inserted per second
    pg_read_cores: float
    pg_replicas: int
    feed_retention: str
    growth_gb_day: float
    synapse_sends: float
    persisters: int
    presence_puts: float
    as_events: float
    nats_events: float
    nats_per_process: float
    limits: list[Limit] = field(default_factory=list)

    @property
    def binding(self) -> Limit:
        """The limit that runs out first as the load grows: the highest utilisation."""
        return max(self.limits, key=lambda lim: lim.utilisation)

    def limit(self, name: str) -> Limit:
        return next(lim for lim in self.limits if lim.name == name)

    @property
    def nearest_ceiling(self) -> Limit:
        """The busiest limit that adding boxes does not move."""
        return max((lim for lim in self.limits if not lim.scales), key=lambda lim: lim.utilisation)


def size(load: float, per_unit: float, target: float, minimum: int = 1) -> int:
    """Smallest count ≥ minimum whose capacity at `target` covers `load`."""
    if load <= 0:
        return minimum
    return max(minimum, math.ceil(load / (per_unit * target) - 1e-9))


def model_row(m: Measured, a: Assumptions, online: int, msgs: float) -> Row:
    session_s = a.session_minutes * 60
    # ---- load
    heartbeats = online * a.devices_per_user / a.heartbeat_s
    transitions = online * 2 / session_s  # online + offline per session
    in_room = online * a.in_room_share
    fanout = min(a.room_online, in_room)
    room_sockets = in_room
    presence_sockets = online * a.presence_socket_share
    sockets = room_sockets + presence_sockets
    room_sessions = room_sockets / session_s  # joins/s (= leaves/s)
    # Room events per second other than messages: room.join + room.leave per room
    # session, room.presence per transition of a user in a room.
    room_events = 2 * room_sessions + transitions * a.in_room_share
    frames = (msgs + room_events) * fanout + transitions * presence_sockets

    # ---- gateway processes: CPU (1 core per process) and memory (sockets)
    sends = msgs * a.bridged_share
    cpu_terms = {
        "heartbeats": heartbeats / m.heartbeat_per_s,
        "posts": msgs / m.post_per_s,
        "fanout frames": frames * m.fanout_socket_ms / 1000,
        "reads": online
        / 3600
        * (
            a.room_lists_per_hour * m.room_list_ms
            + (a.history_pages_per_hour + a.feed_pages_per_hour) * m.room_page_ms
        )
        / 1000,
        "bridge": sends * a.bridge_cost_factor / m.post_per_s,
    }
    gateway_cpu = sum(cpu_terms.values())
    sockets_cap = (a.process_memory_mb - m.rss_base_mb) * 1024 / m.socket_kb
    p_cpu = size(gateway_cpu, 1.0, a.target, a.min_processes)
    p_mem = size(sockets, sockets_cap, a.target, a.min_processes)
    processes = max(p_cpu, p_mem)
    if p_mem > p_cpu:
        bound = "memory (sockets)"
    else:
        term = max(cpu_terms, key=lambda k: cpu_terms[k])
        bound = f"CPU: {term} {cpu_terms[term] / gateway_cpu:.0%}" if gateway_cpu else "minimum"

    # ---- Redis: cores of CPU, one core per shard
    membership_op = (a.membership_op_us or m.heartbeat_redis_us) / 1e6
    small = a.redis_small_op_us / 1e6
    subscribers = processes * (1 - (1 - 1 / processes) ** fanout) if fanout >= 1 else 0.0
    hb_redis = heartbeats * m.heartbeat_redis_us / 1e6
    spread = {
        "posts": msgs * m.post_redis_ms / 1000,
        "pub/sub deliveries": (msgs + room_events) * subscribers * small
        + transitions * processes * small,
        "presence sweeps": processes * a.presence_buckets / SWEEP_INTERVAL_S * small,
    }
    membership = (
        sockets / session_s * MEMBERSHIP_SCRIPTS_PER_SOCKET * membership_op
        + processes / LEASE_TICK_S * 2 * membership_op
        + online / 3600 * a.room_lists_per_hour * membership_op
    )
    spread_total = sum(spread.values())

    def busiest(shards: int) -> float:
        buckets = a.presence_buckets if shards > 1 else 1
        share = math.ceil(buckets / shards) / buckets if shards <= buckets else 1 / buckets
        return hb_redis * share + spread_total / shards + membership

    floor = hb_redis / max(a.presence_buckets, 1) + membership
    if floor + spread_total / MAX_SEARCH > a.target:
        # One bucket or the membership slot alone is over the target: more shards
        # than buckets do not help (raise PRESENCE_CLUSTER_BUCKETS, or redesign).
        shards = max(a.min_shards, a.presence_buckets, math.ceil(spread_total / a.target))
    else:
        shards = a.min_shards
        while busiest(shards) > a.target:
            shards += 1
    if 1 < shards < CLUSTER_MIN_MASTERS:
        shards = CLUSTER_MIN_MASTERS
    redis_terms = {"heartbeats": hb_redis, **spread, "membership": membership}
    redis_ops = (
        heartbeats
        + 2 * msgs  # rate-limit EVALSHA + SPUBLISH
        + room_events
        + transitions
        + sockets / session_s * MEMBERSHIP_SCRIPTS_PER_SOCKET
        + processes / LEASE_TICK_S * 2
        + online / 3600 * a.room_lists_per_hour
        + processes * a.presence_buckets / SWEEP_INTERVAL_S
    )
    bucket_load = hb_redis / a.presence_buckets  # on a cluster; one Redis holds all

    # ---- PostgreSQL
    pg_write = msgs * m.post_pg_ms * (1 + a.bridged_share * a.bridge_cost_factor) / 1000
    pg_read = (
        online
        / 3600
        * (
            a.history_pages_per_hour * m.history_page_ms
            + a.feed_pages_per_hour * m.feed_page_ms
            + a.searches_per_hour * m.search_mean_ms
        )
        / 1000
    )
    if (pg_write + pg_read) / a.pg_primary_cores <= a.target:
        replicas = 0
        primary_load = pg_write + pg_read
    else:
        replicas = size(pg_read, a.pg_replica_cores, a.target)
        primary_load = pg_write
    retention = "daily partitions" if msgs > FEED_PARTITION_ABOVE_MSGS else "batched deletes"
    growth = msgs * 86_400 * m.room_row_bytes / 1e9  # kept forever: GB per day

    # ---- Synapse
    syn_events = a.synapse_events_per_s or m.synapse_sends_per_s
    syn_puts_cap = a.synapse_presence_puts_per_s or m.synapse_presence_puts_per_s
    persisters = size(sends, syn_events, a.target)
    visible = online * a.matrix_visible_share
    presence_puts = (
        visible * m.presence_puts_per_ghost_refresh / a.presence_refresh_s + visible * 2 / session_s
    )
    as_cap = a.as_txn_events / (a.as_txn_ms / 1000)
    as_events = sends  # our own echoes; Matrix-origin traffic comes on top

    # ---- NATS: room messages + presence transitions, one publisher per process
    nats = msgs + transitions
    nats_per_process = nats / processes

    limits = [
        Limit("gateway CPU", gateway_cpu, processes * 1.0, True),
        Limit("gateway memory (sockets)", sockets, processes * sockets_cap, True),
        Limit("Redis busiest shard", busiest(shards), 1.0, True),
        Limit("Redis presence bucket", bucket_load, 1.0, False),
        Limit("Redis membership slot", membership, 1.0, False),
        Limit("PG primary", primary_load, a.pg_primary_cores, False),
        Limit(
            "PG replicas", pg_read if replicas else 0.0, max(replicas, 1) * a.pg_replica_cores, True
        ),
        Limit("Synapse event persisters", sends, persisters * syn_events, True),
        Limit("Synapse presence writer", presence_puts, syn_puts_cap, False),
        Limit("Synapse appservice sender", as_events, as_cap, False),
        Limit("NATS publisher per process", nats_per_process * a.nats_ack_ms / 1000, 1.0, False),
        Limit("NATS stream", nats, a.nats_stream_per_s, False),
    ]
    return Row(
        online=online,
        msgs=msgs,
        heartbeats=heartbeats,
        processes=processes,
        gateway_bound=bound,
        gateway_cpu=gateway_cpu,
        cpu_terms=cpu_terms,
        sockets=sockets,
        sockets_per_process_cap=sockets_cap,
        heartbeat_per_process_cap=m.heartbeat_per_s,
        shards=shards,
        redis_max_shard=busiest(shards),
        redis_terms=redis_terms,
        redis_ops=redis_ops,
        membership_load=membership,
        bucket_load=bucket_load,
        pg_write_cores=pg_write,
        pg_rows=msgs * (3 + a.bridged_share),  # message, feed, outbox (+ echo inbox row)
        pg_read_cores=pg_read,
        pg_replicas=replicas,
        feed_retention=retention,
        growth_gb_day=growth,
        synapse_sends=sends,
        persisters=persisters,
        presence_puts=presence_puts,
        as_events=as_events,
        nats_events=nats,
        nats_per_process=nats_per_process,
        limits=limits,
    )


def model(m: Measured, a: Assumptions, online: Sequence[int], msgs: Sequence[float]) -> list[Row]:
    return [model_row(m, a, u, r) for u in online for r in msgs]


# --------------------------------------------------------------------------- output


def _n(x: float) -> str:
    if x >= 1_000_000 and x % 1_000_000 == 0:
        return f"{x / 1_000_000:.0f}M"
    if x >= 1000 and x % 1000 == 0:
        return f"{x / 1000:.0f}k"
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{x:.0%}" + (" ✗" if x > 1 else "")


def figures_table(figures: Sequence[Figure]) -> str:
    lines = ["| figure | value | from | how |", "|---|---|---|---|"]
    for f in figures:
        value = f"{f.value:,.3f}".rstrip("0").rstrip(".")
        lines.append(f"| `{f.key}` | {value} {f.unit} | {f.source} | {f.how} |")
    return "\n".join(lines)


def assumptions_table(a: Assumptions, m: Measured) -> str:
    rows = [(k, v) for k, v in vars(a).items()]
    lines = ["| assumption (`--option`) | value |", "|---|---|"]
    for key, value in rows:
        if value is None:
            default = {
                "membership_op_us": f"{m.heartbeat_redis_us:g} (heartbeat script)",
                "synapse_events_per_s": f"{m.synapse_sends_per_s:g} (measured raw sends)",
                "synapse_presence_puts_per_s": f"{m.synapse_presence_puts_per_s:g} (docs)",
            }[key]
            shown = default
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"| `--{key.replace('_', '-')}` | {shown} |")
    return "\n".join(lines)


def table(rows: Sequence[Row]) -> str:
    head = (
        "| online | msgs/s | heartbeats/s | gateway processes (bound by) "
        "| per process: heartbeats/s · sockets | Redis shards (busiest) "
        "| PostgreSQL | Synapse | NATS events/s | binds first | nearest ceiling |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        b = r.binding
        c = r.nearest_ceiling
        pg = (
            f"{r.pg_rows:,.0f} rows/s; "
            f"primary {_pct(r.limit('PG primary').utilisation)} of {r.limit('PG primary').capacity:g} cores"
            + (f", {r.pg_replicas} replica(s)" if r.pg_replicas else ", reads on primary")
            + f"; feed: {r.feed_retention}; +{r.growth_gb_day:,.0f} GB/day history"
        )
        syn = (
            f"{r.persisters} event persister(s) for {r.synapse_sends:,.0f} sends/s; "
            f"presence {r.presence_puts:,.0f} PUTs/s ({_pct(r.limit('Synapse presence writer').utilisation)}); "
            f"appservice {_pct(r.limit('Synapse appservice sender').utilisation)}"
        )
        lines.append(
            f"| {_n(r.online)} | {_n(r.msgs)} | {r.heartbeats:,.0f} "
            f"| {r.processes} ({r.gateway_bound}) "
            f"| {r.heartbeats / r.processes:,.0f} · {r.sockets / r.processes:,.0f} "
            f"| {r.shards} ({_pct(r.redis_max_shard)}; {r.redis_ops / r.shards:,.0f} ops/s each) "
            f"| {pg} | {syn} | {r.nats_events:,.0f} "
            f"| **{b.name}** {_pct(b.utilisation)} | {c.name} {_pct(c.utilisation)} |"
        )
    return "\n".join(lines)


def utilisation_table(rows: Sequence[Row]) -> str:
    names = [lim.name for lim in rows[0].limits]
    lines = [
        "| online | msgs/s | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 2),
    ]
    for r in rows:
        cells = []
        for lim in r.limits:
            text = _pct(lim.utilisation)
            cells.append(f"**{text}**" if lim is r.binding else text)
        lines.append(f"| {_n(r.online)} | {_n(r.msgs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Assumptions]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--synapse-doc", type=Path, default=SYNAPSE_WORKERS_DOC)
    parser.add_argument("--online", default="10000,100000,1000000", help="steps, comma-separated")
    parser.add_argument("--messages", default="100,1000,10000", help="msgs/s steps")
    parser.add_argument("--table-only", action="store_true", help="print only the table")
    helps = {
        "heartbeat_s": "heartbeat interval per device (PRESENCE_HEARTBEAT_SECONDS)",
        "devices_per_user": "heartbeating tabs per online user",
        "in_room_share": "share of online users with a room WebSocket open",
        "room_online": "average online members of the room a message is posted in (fanout)",
        "presence_socket_share": "share of online users with /ws/city/presence open "
        "(the shipped web app: 0, HTTP heartbeats)",
        "matrix_visible_share": "share of online city users some Matrix user can see",
        "presence_refresh_s": "MATRIX_PRESENCE_REFRESH_SECONDS",
        "session_minutes": "average online session (joins, leaves, transitions)",
        "room_lists_per_hour": "GET /city/rooms per online user per hour",
        "history_pages_per_hour": "room history pages per online user per hour",
        "feed_pages_per_hour": "feed pages per online user per hour",
        "searches_per_hour": "searches per online user per hour",
        "bridged_share": "share of messages in rooms bridged to Matrix (today: all)",
        "bridge_cost_factor": "outbox send + echo inbox row, as a multiple of one POST's "
        "gateway and PostgreSQL CPU (not measured)",
        "target": "utilisation a scaled-out resource is sized to",
        "process_memory_mb": "memory per gateway process",
        "min_processes": "fewest gateway processes (availability)",
        "presence_buckets": "PRESENCE_CLUSTER_BUCKETS",
        "min_shards": "fewest Redis masters (1 = a single Redis)",
        "redis_small_op_us": "Redis CPU per pub/sub delivery, empty sweep poll, lease "
        "tick (not measured)",
        "membership_op_us": "Redis CPU per membership script (default: the heartbeat's)",
        "pg_primary_cores": "cores of the PostgreSQL primary",
        "pg_replica_cores": "cores of each read replica",
        "synapse_events_per_s": "events/s one Synapse event persister takes "
        "(default: the measured raw sends)",
        "synapse_presence_puts_per_s": "presence PUTs/s of Synapse's one presence writer",
        "as_txn_events": "events per appservice transaction (Synapse: 100)",
        "as_txn_ms": "gateway's time to answer one appservice transaction (not measured)",
        "nats_ack_ms": "JetStream publish ack round trip (not measured)",
        "nats_stream_per_s": "publishes/s one JetStream stream takes (not measured)",
    }
    defaults = Assumptions()
    for key, value in vars(defaults).items():
        kind: type = int if isinstance(value, int) else float
        parser.add_argument(
            f"--{key.replace('_', '-')}", type=kind, default=value, help=helps.get(key)
        )
    args = parser.parse_args(argv)
    assumptions = Assumptions(**{k: getattr(args, k) for k in vars(defaults)})
    return args, assumptions


def run(argv: Sequence[str] | None = None) -> tuple[Measured, list[Figure], list[Row], str]:
    args, a = parse_args(argv)
    synapse_doc = args.synapse_doc.read_text() if args.synapse_doc.exists() else ""
    measured, figures = read_measured(args.results.read_text(), synapse_doc)
    online = [int(float(x)) for x in args.online.split(",")]
    msgs = [float(x) for x in args.messages.split(",")]
    rows = model(measured, a, online, msgs)
    parts = [table(rows)]
    if not args.table_only:
        parts = [
            f"Figures read from {args.results.name} (and docs):\n\n" + figures_table(figures),
            "Assumptions:\n\n" + assumptions_table(a, measured),
            "Capacity per step:\n\n" + table(rows),
            "Utilisation of every limit (bold: binds first; ✗: over 100 %, "
            "no count of boxes fixes it):\n\n" + utilisation_table(rows),
        ]
    return measured, figures, rows, "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        *_, text = run(argv)
    except FigureError as exc:
        print(f"capacity_model: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
