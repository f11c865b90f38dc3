"""GET /city/search at 1,000,000 messages (SPEC §13 "Search"; gateway/core/search.py).

Creates its own database (default `city_bench_search`), applies migrations/*.sql
(bench.history's bookkeeping, so 0009_search.sql's config, generated tsvector column
and GIN index are the real ones), fills `city_room_messages` with server-side
`insert ... select generate_series` batches as bench/history.py does (its ULID
expression, trigger and index handling), then times the real `SearchService.search`
— transaction, `SET LOCAL plan_cache_mode`, parse, tier queries, highlights — over
an asyncpg pool, like the gateway's, for one- and two-word queries of every
frequency, with and without a room filter, newest page and a deeper page.

Text: ~60 % Ukrainian, ~40 % English messages of 4-19 words drawn from the word
lists below with a Zipf-like (s≈1) distribution over each list (the head is
"very common": the top Ukrainian word is in ~1/3 of Ukrainian messages), plus
"rare" words: each appears in ~10 messages of the million. Rooms: `--rooms`
(default 200) with a Zipf share of the messages (the biggest ~18 %).

    .venv/bin/python bench/search.py                    # 1M rows, write RESULTS.md section
    .venv/bin/python bench/search.py --rows 100000 --no-write   # quick
    .venv/bin/python bench/search.py --reuse --keep     # time again without reloading
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import (
    add_admin_dsn,
    apply_migrations,
    bulk_load,
    fresh_or_reused,
    pct,
    ulid_expr,
)
from bench.results import write_section
from gateway.core.search import SearchService
from gateway.core.storage import search as search_sql

TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0

# Most frequent first (Zipf rank = position). Inflected forms are separate entries,
# as they occur in real text, so the Ukrainian stem prefix matches several of them.
UK_WORDS = """
і в на що не місто з у це до ми як кімната за але так вже міста ти він сьогодні
ввечері зустріч можна буде там треба дуже добре привіт дякую разом завтра коли люди
кімнаті тут чи нас місті новий нова нові проєкт проєкту робота роботи друзі друзів
парк парку музей музею бібліотека бібліотеки кава кави вулиця вулиці площа площі
зустрічі зустріччю подія події концерт концерту виставка виставки мистецтво
вечірка вечірки гра гри питання відповідь відповіді план плану карта карти школа
школи університет університету лекція лекції семінар семінару волонтери волонтерів
допомога допомоги сусіди сусідів будинок будинку двір двору транспорт трамвай
автобус метро велосипед велосипеди дощ сонце погода погоди ранок вечір ніч тиждень
місяць рік свято свята фестиваль фестивалю кімнатою містом бібліотекою кав'ярня
кав'ярні ринок ринку магазин магазину лікарня аптека театр театру кіно кінотеатр
""".split()
EN_WORDS = """
the to and a of in is it you that for on we this city with be are at room have
meeting today tonight can will there need very good hello thanks together tomorrow
when people here new project work friends park museum library coffee street square
event events concert exhibition art party game question answer plan map school
university lecture seminar volunteers help neighbours house yard transport tram bus
metro bicycle bikes rain sun weather morning evening night week month year holiday
festival cafe market shop hospital pharmacy theatre cinema rooms meetings running
walks walking garden gardens river bridge bridges music book books talk talks open
closed early late free ticket tickets station train trains lunch dinner breakfast
""".split()
RARE_WORDS = [
    "кракатау",
    "ультрамарин",
    "бергамот",
    "zanzibar",
    "quokka",
    "serendipity",
    "палімпсест",
    "xylophone",
]


def _generate_sql(rows: int, rooms: int, days: float) -> str:
    """One batch: messages $1..$2; $3 Ukrainian words, $4 English, $5 rare words."""
    step_s = days * 86400 / rows
    ts = f"(timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => g * {step_s!r}))"
    u_room = "((hashtextextended('room' || g, 7) & 2147483647)::float8 / 2147483648.0)"
    rank = f"least({rooms - 1}, floor(exp({u_room} * ln({rooms + 1}))) - 1)::int"
    uk = "(hashtextextended('lang' || g, 9) & 1023) < 614"
    u_word = "((hashtextextended(g || ':' || i, 11) & 2147483647)::float8 / 2147483648.0)"

    def pick(words: str) -> str:
        n = f"cardinality({words})"
        return f"({words})[1 + least({n} - 1, floor(exp({u_word} * ln({n} + 1))) - 1)::int]"

    words = f"case when {uk} then {pick('$3::text[]')} else {pick('$4::text[]')} end"
    length = "4 + (hashtextextended('len' || g, 3) & 15)::int"
    # ~10 messages per rare word per million: g in a sparse residue class.
    rare = (
        "case when hashtextextended('rare' || g, 5) % 12500 = 0"
        " then ' ' || ($5::text[])[1 + (g % cardinality($5::text[]))::int] else '' end"
    )
    body = f"(select string_agg({words}, ' ') from generate_series(1, {length}) i) || {rare}"
    # ~10 % of messages from Matrix users, as the bridge stores them.
    matrix = "case when g % 10 = 0 then '@m' || (g % 997) || ':matrix.example' end"
    user = "case when g % 10 = 0 then null else 'u_' || (hashtextextended('u' || g, 5) & 65535) end"
    return f"""
insert into city_room_messages (id, room_id, author_user_id, author_matrix_id, body, created_at)
select 'm_city_' || {ulid_expr(ts, "'m' || g")},
       'room_city_r' || lpad(({rank})::text, 4, '0'), {user}, {matrix}, {body}, {ts}
from generate_series($1::bigint, $2::bigint) g
order by g
"""


async def generate(conn: asyncpg.Connection, rows: int, rooms: int, batch: int) -> float:
    t0 = time.perf_counter()
    await bulk_load(
        conn,
        t0,
        rooms_sql="""insert into city_rooms (id, slug, name)
           select 'room_city_r' || lpad(r::text, 4, '0'), 'r' || lpad(r::text, 4, '0'), 'Room ' || r
           from generate_series(0, $1 - 1) r""",
        rooms=rooms,
        batch_sql=_generate_sql(rows, rooms, days=30.0),
        batch_args=(UK_WORDS, EN_WORDS, RARE_WORDS),
        rows=rows,
        batch=batch,
        unit="",
    )
    await conn.execute("vacuum (analyze) city_room_messages")
    await conn.execute("vacuum (analyze) city_rooms")
    return time.perf_counter() - t0


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


async def _frequencies(conn: asyncpg.Connection, words: list[str]) -> dict[str, int]:
    """Messages matching each word as the service matches it (loose tier)."""
    out = {}
    for w in words:
        out[w] = int(
            await conn.fetchval(
                """select count(*) from city_room_messages
                   where search_tsv @@ city_search_loose(websearch_to_tsquery('city_search', $1))""",
                w,
            )
        )
    return out


QUERIES: dict[str, list[str]] = {
    "1 word, very common": ["місто", "кімната", "city", "room"],
    "1 word, common": ["бібліотека", "зустріч", "museum", "coffee"],
    "1 word, uncommon": ["кінотеатр", "аптека", "breakfast", "trains"],
    "1 word, rare": ["кракатау", "бергамот", "quokka", "xylophone"],
    "2 words, very common": ["місто кімната", "нова кімната", "city room", "meeting today"],
    "2 words, common + rare": ["місто ультрамарин", "city serendipity"],
    "2 words, common": ["бібліотека кава", "museum coffee", "концерт сьогодні"],
    "2 words, no match": ["кракатау quokka", "xylophone палімпсест"],
    # Common each, never together (one Ukrainian, one English word).
    "2 words, common, never together": ["місто city", "кімната room"],
}


async def measure(dsn: str, repeats: int, rooms: list[str], seed: int) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
    assert pool is not None
    service = SearchService(pool)
    rng = random.Random(seed)
    stats: dict[str, list[float]] = {}
    try:
        # Warm-up: prepared statements and, after five runs, the plan cache's choice.
        for qs in QUERIES.values():
            for q in qs:
                for _ in range(6):
                    await service.search(q)
        for kind, qs in QUERIES.items():
            for _ in range(repeats):
                for q in qs:
                    for scope in ("all rooms", "room filter"):
                        room = rng.choice(rooms) if scope == "room filter" else None
                        t = time.perf_counter()
                        page = await service.search(q, room_id=room)
                        ms = (time.perf_counter() - t) * 1000
                        stats.setdefault(f"{kind} | {scope} | page 1", []).append(ms)
                        if page.next is not None:
                            t = time.perf_counter()
                            await service.search(q, room_id=room, before=page.next)
                            ms = (time.perf_counter() - t) * 1000
                            stats.setdefault(f"{kind} | {scope} | page 2", []).append(ms)
    finally:
        await pool.close()
    return stats


async def explain(conn: asyncpg.Connection, q: str) -> str:
    """Plans of the newest page's probe and GIN steps (all rooms) for `q`: both tiers
    at once (`tiered`) when the query has two, else the one tier (`matches`)."""
    parsed = await search_sql.parse(conn, q)
    out = [f"--- {q!r}: {parsed.loose}"]
    await conn.execute("set plan_cache_mode = force_custom_plan")
    window = search_sql.WINDOW_ROWS
    if parsed.loose != parsed.exact:
        head: tuple[object, ...] = (parsed.loose, parsed.exact)
        probe_sql, below_sql = search_sql.PROBE_TIERS_ALL, search_sql.BELOW_TIERS_ALL
    else:
        head = (parsed.loose,)
        probe_sql, below_sql = search_sql.PROBE_ALL, search_sql.BELOW_ALL
    probe = await conn.fetchrow(probe_sql, *head, parsed.top + 1, 21, window)
    steps = [
        ("probe", probe_sql, (parsed.top + 1, 21, window)),
        ("below", below_sql, (probe["low"], 21)),
    ]
    for name, sql, rest in steps:
        plan = await conn.fetch("explain (analyze, buffers, costs off) " + sql, *head, *rest)
        used = name == "probe" or (len(probe["hits"]) < 21 and probe["low"] is not None)
        out.append(f"[{name}]" + ("" if used else " (not run for this query)"))
        out += ["  " + r[0] for r in plan]
    return "\n".join(out)


async def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rooms", type=int, default=200)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--db", default="city_bench_search")
    add_admin_dsn(ap)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    load_before = _load()
    admin = await asyncpg.connect(args.admin_dsn)
    dsn = args.admin_dsn.rsplit("/", 1)[0] + "/" + args.db
    gen_s: float | None = None
    try:
        reuse = await fresh_or_reused(admin, dsn, args.db, args.rows, args.reuse)
        conn = await asyncpg.connect(dsn)
        try:
            if not reuse:
                print("migrations:", ", ".join(await apply_migrations(conn)), flush=True)
                gen_s = await generate(conn, args.rows, args.rooms, args.batch)
                print(f"generated {args.rows:,} messages in {gen_s:.0f} s", flush=True)
            rooms = [r["id"] for r in await conn.fetch("select id from city_rooms order by id")]
            words = sorted({w for qs in QUERIES.values() for q in qs for w in q.split()})
            freq = await _frequencies(conn, words)
            size = await conn.fetchval(
                "select pg_size_pretty(pg_relation_size('ix_city_room_messages_search'))"
            )
            plans = [
                await explain(conn, q)
                for q in ("місто", "бібліотека", "кракатау", "city room", "місто city")
            ]
        finally:
            await conn.close()
        load_start = _load()
        stats = await measure(dsn, args.repeats, rooms, args.seed)
        load_after = _load()
    finally:
        if not args.keep:
            await admin.execute(f'drop database if exists "{args.db}" with (force)')
        await admin.close()

    everything = [v for vs in stats.values() for v in vs]
    lines = [
        "## Search (GET /city/search, bench/search.py)",
        "",
        f"{args.rows:,} messages (~60 % Ukrainian, ~40 % English, 4-19 words, Zipf word"
        f" frequencies; ~10 % Matrix-authored) in {args.rooms} rooms; GIN index {size}."
        + (f" Generated in {gen_s:.0f} s." if gen_s else ""),
        "Timed: `SearchService.search` end to end (pool → transaction, `SET LOCAL",
        "plan_cache_mode`, parse, tier pages, highlights), limit 20, after warm-up;"
        f" {args.repeats} runs of each query, all rooms and a random room, page 1 and",
        "(when there is one) page 2.",
        "",
        f"Targets: p50 ≤ {TARGET_P50_MS:g} ms, p99 ≤ {TARGET_P99_MS:g} ms.",
        "",
        "| queries | scope | page | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for kind, vs in stats.items():
        lines.append(
            f"| {kind} | {len(vs)} | {pct(vs, 50):.1f} | {pct(vs, 99):.1f} | {max(vs):.1f} |"
        )
    lines.append(
        f"| **all** | | | {len(everything)} | **{pct(everything, 50):.1f}** |"
        f" **{pct(everything, 99):.1f}** | {max(everything):.1f} |"
    )
    lines += [
        "",
        "Matches per word (loose tier, all rooms): "
        + ", ".join(f"{w} {n:,}" for w, n in sorted(freq.items(), key=lambda x: -x[1])),
        "",
        "How a page is found (gateway/core/storage/search.py): a probe of the newest",
        f"{search_sql.WINDOW_ROWS:,} messages below the cursor ({search_sql.ROOM_WINDOW_ROWS:,}"
        " of the room with a room filter: its rows are",
        "scattered, a heap page each) answers common words, stopping at the page's 21st hit;",
        "rarer words go to the GIN index on (room_id, search_tsv) (btree_gin), so a room",
        "filter intersects inside the index. A first page of a two-tier query (Ukrainian",
        "words) probes and runs GIN once over the loose query with the tier computed per",
        "match, so two common words that never occur together (one Ukrainian, one English:",
        "the GIN step intersects two long posting lists) pay that intersection once.",
        "Remaining cost centres: a later page of two very common words (the tier's GIN",
        "intersection of two long lists) and the room probe's random heap reads.",
        "",
        f"Load (1/5/15 min, 2 cores shared with other test runs): before {load_before};"
        f" timing start {load_start}; after {load_after}.",
        f"Mean of all: {statistics.fmean(everything):.1f} ms.",
        "",
        "<details><summary>Plans (tier page, all rooms, custom plan)</summary>",
        "",
        "```",
        *plans,
        "```",
        "</details>",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("search", text)
    ok = pct(everything, 50) <= TARGET_P50_MS and pct(everything, 99) <= TARGET_P99_MS
    print("TARGETS MET" if ok else "TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
