"""Full-text search over room messages, city- and Matrix-authored alike (SPEC §13).

Order — "newest-relevant first", in two tiers:

1. messages matching *exactly*: every word in the form typed (English words by
   their Snowball stem, so "rooms" is "room");
2. then the rest that match *loosely*: Ukrainian words in any form of their stem
   (migrations/0009_search.sql `city_search_loose`).

Newest first within each tier. The tiers partition the matches (tier 2 is `loose
and not exact`), so keyset paging by (tier, seq) never repeats or skips a message,
and each page costs what its own rows cost (gateway.core.storage.search
`matches`): no score of every match is computed, which is what keeps a very common
word as fast as a rare one (bench/search.py). When both tiers are the same query
(English words only) there is only tier 1. A phrase tier (words adjacent, in order)
was measured and dropped: a phrase of two common words is rare, so its page fell
through to the GIN step, which then rechecked every message holding both words
(~85 ms p50 at 1M messages); a phrase is still searchable by quoting it. A
search's first page with two tiers is found in one pass over the loose matches,
each labelled with its tier (`_first_page`, storage `tiered`): one probe and one
GIN intersection instead of one per tier, which is what two common words that never
occur together cost (~74 ms → ~13 ms p50 at 1M messages).

The cursor (`next`, given back as `before`) is opaque: tier, the seq to continue
below, the newest seq when the search started (later messages join a new search,
not a running one) and a hash of the query and room, so a cursor is refused (422
`invalid_cursor`) with another query.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import asyncpg

from gateway.core.errors import AppError, not_found, unstorable_input
from gateway.core.storage import rooms as room_sql
from gateway.core.storage import search as search_sql
from gateway.core.storage.search import Hit

QUERY_MAX_CHARS = 256
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class SearchPage:
    results: list[Hit]
    next: str | None


@dataclass(frozen=True, slots=True)
class _Cursor:
    tier: int
    before_seq: int
    top: int


def check_query(q: str) -> str:
    text = q.strip()
    if not text:
        raise AppError(422, "empty_query", "q must contain something to search for")
    if len(text) > QUERY_MAX_CHARS:
        raise AppError(422, "query_too_long", f"q is limited to {QUERY_MAX_CHARS} characters")
    if "\x00" in text:
        raise unstorable_input()
    return text


class SearchService:
    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db

    async def search(
        self, q: str, *, room_id: str | None = None, limit: int = 20, before: str | None = None
    ) -> SearchPage:
        text = check_query(q)
        if not 1 <= limit <= MAX_LIMIT:
            raise AppError(422, "invalid_limit", f"limit must be 1-{MAX_LIMIT}")
        if room_id is not None and "\x00" in room_id:
            raise unstorable_input()
        scope = _scope(text, room_id)
        cursor = _decode(before, scope) if before is not None else None
        async with self._db.acquire() as conn, conn.transaction():
            await conn.execute(search_sql.CUSTOM_PLANS)
            page = await self._page(conn, text, room_id, limit, cursor, scope)
            if not page.results and room_id is not None:
                if await room_sql.get_room(conn, room_id) is None:
                    raise not_found("room_not_found", f"room {room_id!r} does not exist")
        return page

    async def _page(
        self,
        conn: asyncpg.Connection,
        text: str,
        room_id: str | None,
        limit: int,
        cursor: _Cursor | None,
        scope: str,
    ) -> SearchPage:
        parsed = await search_sql.parse(conn, text)
        if parsed.nodes == 0:  # only stop words or punctuation: nothing can match
            return SearchPage([], None)
        exact = parsed.exact
        # Tier queries. `&&` / `!!` combine tsqueries, so each tier is one @@.
        if exact == parsed.loose:
            tiers = [exact]
        else:
            tiers = [f"({exact}) & ({parsed.loose})", f"({parsed.loose}) & !({exact})"]
        top = cursor.top if cursor is not None else parsed.top
        tier = cursor.tier if cursor is not None else 1
        before_seq = cursor.before_seq if cursor is not None else top + 1
        if len(tiers) == 2 and cursor is None:
            first = await self._first_page(conn, parsed, room_id, limit, scope)
            if first is not None:
                return first
        results: list[Hit] = []
        while tier <= len(tiers):
            want = limit - len(results)
            found = await search_sql.matches(
                conn,
                tiers[tier - 1],
                parsed.marks,
                before_seq=before_seq,
                limit=want + 1,
                room_id=room_id,
            )
            if len(found) > want:  # more in this tier: continue below the last one
                results.extend(found[:want])
                last = results[-1].message.seq
                return SearchPage(results, _encode(_Cursor(tier, last, top), scope))
            results.extend(found)
            tier, before_seq = tier + 1, top + 1
            if len(results) == limit:
                # Full page, this tier done: more only if the next tier has any.
                if tier <= len(tiers) and await search_sql.matches(
                    conn,
                    tiers[tier - 1],
                    parsed.marks,
                    before_seq=before_seq,
                    limit=1,
                    room_id=room_id,
                ):
                    return SearchPage(results, _encode(_Cursor(tier, before_seq, top), scope))
                return SearchPage(results, None)
        return SearchPage(results, None)

    async def _first_page(
        self,
        conn: asyncpg.Connection,
        parsed: search_sql.ParsedQuery,
        room_id: str | None,
        limit: int,
        scope: str,
    ) -> SearchPage | None:
        """Both tiers' first page at once: one probe and at most one GIN pass over the
        loose query (gateway.core.storage.search `tiered`); None: page tier by tier."""
        found = await search_sql.tiered(
            conn,
            parsed.loose,
            parsed.exact,
            parsed.marks,
            before_seq=parsed.top + 1,
            limit=limit + 1,
            room_id=room_id,
        )
        if found is None:
            return None
        results = [hit for _, hit in found[:limit]]
        if len(found) <= limit:
            return SearchPage(results, None)
        # The same cursors as the tier loop: within the tier of the page's last hit,
        # or the start of tier 2 when tier 1 ended exactly at the page's end.
        last_tier, next_tier = found[limit - 1][0], found[limit][0]
        if last_tier == next_tier:
            cursor = _Cursor(last_tier, results[-1].message.seq, parsed.top)
        else:
            cursor = _Cursor(next_tier, parsed.top + 1, parsed.top)
        return SearchPage(results, _encode(cursor, scope))


def _scope(text: str, room_id: str | None) -> str:
    digest = hashlib.blake2b(f"{text}\x00{room_id or ''}".encode(), digest_size=6)
    return digest.hexdigest()


def _encode(cursor: _Cursor, scope: str) -> str:
    raw = f"1.{cursor.tier}.{cursor.before_seq}.{cursor.top}.{scope}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid_cursor() -> AppError:
    return AppError(
        422, "invalid_cursor", "before must be a `next` value returned for this same search"
    )


def _decode(value: str, scope: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        version, tier, before_seq, top, sig = raw.split(".")
        cursor = _Cursor(int(tier), int(before_seq), int(top))
    except (ValueError, UnicodeDecodeError):
        raise _invalid_cursor() from None
    if version != "1" or sig != scope or cursor.tier not in (1, 2):
        raise _invalid_cursor()
    return cursor
