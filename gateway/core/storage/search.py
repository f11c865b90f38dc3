"""SQL for full-text search over room messages (migrations/0009_search.sql).

`city_room_messages.search_tsv` is a stored generated column (text search config
`city_search`) with a GIN index; the service (gateway.core.search) decides the
tiers and the cursor, this module only runs the statements.

Every statement here runs with `plan_cache_mode = force_custom_plan` (`SET LOCAL`
in the caller's transaction): asyncpg prepares statements, and after five runs
PostgreSQL may settle on a generic plan, which cannot see the query's words. The
page itself does not rely on the planner's guess either (see `matches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.core.models import Message
from gateway.core.storage import Row
from gateway.core.storage.messages import _COLUMNS, _message

CUSTOM_PLANS = "set local plan_cache_mode = force_custom_plan"

# websearch_to_tsquery never raises on user input; `exact` keeps word forms, `loose`
# looks Cyrillic words up by their stem, `marks` by its prefix (for ts_headline).
# `top` is the newest message now: a result set's snapshot.
PARSE = """
select exact::text as exact,
       city_search_loose(exact)::text as loose,
       city_search_loose(exact, true)::text as marks,
       numnode(exact) as nodes,
       (select max(seq) from city_room_messages) as top
from (select websearch_to_tsquery('city_search', $1) as exact) q
"""

# HTML-safe highlights: the body is escaped first (&, <, >, "), then ts_headline
# marks matches with <mark>…</mark> — the only markup in the result, since any
# "<mark>" the author typed is already "&lt;mark&gt;". Short bodies come back whole
# (HighlightAll), long ones as the best fragment of ~15-35 words.
_ESCAPED = (
    "replace(replace(replace(replace(m.body, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),"
    " '\"', '&quot;')"
)
SHORT_BODY_CHARS = 280
_HEADLINE = f"""ts_headline('city_search', {_ESCAPED}, $2::tsquery,
    case when char_length(m.body) <= {SHORT_BODY_CHARS}
         then 'StartSel=<mark>, StopSel=</mark>, HighlightAll=true'
         else 'StartSel=<mark>, StopSel=</mark>, MaxWords=35, MinWords=15' end)"""

# "Newest matches first" without trusting the planner's guess of how common the
# words are (a wrong guess either reads every match of a common word through the GIN
# bitmap, or walks the whole table backwards for a rare one):
#
# 1. PROBE: the newest WINDOW_ROWS messages below the cursor (an index range, read
#    backwards), filtered in the same statement. A common word fills the page here;
#    a window that reaches the oldest message answers any word. Cost: <= the window.
#    With a room filter the window is ROOM_WINDOW_ROWS: a room's messages are
#    scattered over the table, so each row of its window is a heap page of its own
#    (~5 µs), where the all-rooms window reads ~14 rows a page.
# 2. BELOW: otherwise the word is rarer than ~limit/window, and the GIN index finds
#    its matches under the window. The index is (room_id, search_tsv) (btree_gin),
#    so a room filter is one more posting list intersected inside the index, not a
#    recheck of every room's matches. `seq + 0` keeps the seq index from being
#    walked for the order (that is the full backward scan). Cost: the posting lists
#    intersected, and the heap rows of its matches.
# 3. FETCH: the rows of the page by seq, with highlights (only for the page).
#
# Two tiers (`tiered`, a search's first page): one probe and at most one GIN pass
# over the loose query, each match labelled with its tier (`@@ exact`), instead of
# a probe and a GIN pass per tier — the GIN intersection is the cost of two common
# words that rarely or never occur together, and it was paid twice.
WINDOW_ROWS = 5000
ROOM_WINDOW_ROWS = 1000


def _window(room_filter: bool) -> int:
    return ROOM_WINDOW_ROWS if room_filter else WINDOW_ROWS


def _probe(room_filter: bool) -> str:
    room = "and room_id = $5" if room_filter else ""
    # `hits` stops reading as soon as it has $3 (a common word: a few dozen rows);
    # `low` is the window's oldest seq (null: the window reaches the first message).
    return f"""
select array(
           select seq from (select seq, search_tsv from city_room_messages
                            where seq < $2 {room} order by seq desc limit $4) w
           where search_tsv @@ $1::tsquery limit $3) as hits,
       (select seq from city_room_messages where seq < $2 {room}
        order by seq desc offset $4 - 1 limit 1) as low
"""


def _below(room_filter: bool) -> str:
    room = "and room_id = $4" if room_filter else ""
    return f"""
select seq from city_room_messages
where search_tsv @@ $1::tsquery and seq < $2 {room}
order by seq + 0 desc limit $3
"""


PROBE_ALL, PROBE_ROOM = _probe(False), _probe(True)
BELOW_ALL, BELOW_ROOM = _below(False), _below(True)


def _probe_tiers(room_filter: bool) -> str:
    room = "and room_id = $6" if room_filter else ""
    # $1 loose, $2 exact; up to $4 loose hits of the window, each with its tier.
    return f"""
with hit as materialized (
    select seq, search_tsv @@ $2::tsquery as exact
    from (select seq, search_tsv from city_room_messages
          where seq < $3 {room} order by seq desc limit $5) w
    where search_tsv @@ $1::tsquery limit $4)
select array(select seq from hit order by seq desc) as hits,
       array(select exact from hit order by seq desc) as exact,
       (select seq from city_room_messages where seq < $3 {room}
        order by seq desc offset $5 - 1 limit 1) as low
"""


def _below_tiers(room_filter: bool) -> str:
    room = "and room_id = $5" if room_filter else ""
    # Tier 1 (also matches exact) first, newest first within each tier.
    return f"""
select seq, exact from (
    select seq, search_tsv @@ $2::tsquery as exact from city_room_messages
    where search_tsv @@ $1::tsquery and seq < $3 {room}) m
order by exact desc, seq desc limit $4
"""


PROBE_TIERS_ALL, PROBE_TIERS_ROOM = _probe_tiers(False), _probe_tiers(True)
BELOW_TIERS_ALL, BELOW_TIERS_ROOM = _below_tiers(False), _below_tiers(True)
FETCH = f"""
select m.*, {_HEADLINE} as highlight from (
    select {_COLUMNS} from city_room_messages where seq = any($1::bigint[])
) m order by m.seq desc
"""


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    exact: str  # tsquery text
    loose: str
    marks: str  # for ts_headline: stems as prefixes, so inflected words are marked
    nodes: int  # 0: only stop words / no lexemes
    top: int  # max(seq) now (0 when there are no messages)


@dataclass(frozen=True, slots=True)
class Hit:
    message: Message
    highlight: str


async def parse(conn: asyncpg.Connection, query: str) -> ParsedQuery:
    row = await conn.fetchrow(PARSE, query)
    return ParsedQuery(
        exact=row["exact"],
        loose=row["loose"],
        marks=row["marks"],
        nodes=int(row["nodes"]),
        top=int(row["top"] or 0),
    )


async def matches(
    conn: asyncpg.Connection,
    match: str,
    highlight: str,
    *,
    before_seq: int,
    limit: int,
    room_id: str | None,
) -> list[Hit]:
    """Up to `limit` messages matching tsquery `match` with seq < `before_seq`, newest
    first, each with its body highlighted for tsquery `highlight`."""
    window = _window(room_id is not None)
    if room_id is None:
        probe = await conn.fetchrow(PROBE_ALL, match, before_seq, limit, window)
    else:
        probe = await conn.fetchrow(PROBE_ROOM, match, before_seq, limit, window, room_id)
    seqs: list[int] = list(probe["hits"])
    if len(seqs) < limit and probe["low"] is not None:
        args: list[object] = [match, probe["low"], limit - len(seqs)]
        if room_id is not None:
            args.append(room_id)
        rows = await conn.fetch(BELOW_ALL if room_id is None else BELOW_ROOM, *args)
        seqs += [r["seq"] for r in rows]
    return await _fetch(conn, seqs, highlight)


async def tiered(
    conn: asyncpg.Connection,
    loose: str,
    exact: str,
    highlight: str,
    *,
    before_seq: int,
    limit: int,
    room_id: str | None,
) -> list[tuple[int, Hit]] | None:
    """The first `limit` messages matching tsquery `loose` with seq < `before_seq`
    in (tier, newest first) order — tier 1 those also matching `exact` — or None when
    the loose query is common in the probe window and its tier-1 matches are not
    simply its newest: then each tier is paged on its own (`matches`)."""
    window = _window(room_id is not None)
    args: list[object] = [loose, exact, before_seq, limit, window]
    if room_id is not None:
        args.append(room_id)
    probe = await conn.fetchrow(PROBE_TIERS_ALL if room_id is None else PROBE_TIERS_ROOM, *args)
    found = [(1 if e else 2, seq) for seq, e in zip(probe["hits"], probe["exact"], strict=True)]
    if len(found) >= limit:
        # Common in the window: done if its newest matches are all tier 1 (they are
        # then the newest tier-1 matches), else the per-tier pages decide.
        if all(tier == 1 for tier, _ in found):
            return await _fetch_tiers(conn, found, highlight)
        return None
    if probe["low"] is not None:
        # Rare in the window, so (as in `matches`) rare below it: one GIN pass for
        # both tiers; the window's matches are all newer than the pass's.
        args[2] = probe["low"]
        args.pop(4)
        rows = await conn.fetch(BELOW_TIERS_ALL if room_id is None else BELOW_TIERS_ROOM, *args)
        found += [(1 if r["exact"] else 2, r["seq"]) for r in rows]
    found.sort(key=lambda t: (t[0], -t[1]))
    return await _fetch_tiers(conn, found[:limit], highlight)


async def _fetch(conn: asyncpg.Connection, seqs: list[int], highlight: str) -> list[Hit]:
    if not seqs:
        return []
    return [_hit(r) for r in await conn.fetch(FETCH, seqs, highlight)]


async def _fetch_tiers(
    conn: asyncpg.Connection, found: list[tuple[int, int]], highlight: str
) -> list[tuple[int, Hit]]:
    hits = {h.message.seq: h for h in await _fetch(conn, [seq for _, seq in found], highlight)}
    # A message deleted since the probe is simply not on the page.
    return [(tier, hits[seq]) for tier, seq in found if seq in hits]


def _hit(row: Row) -> Hit:
    data = dict(row)
    highlight = data.pop("highlight")
    return Hit(_message(data), highlight)
