"""SearchService against real PostgreSQL (migrations/0009_search.sql): what it finds in
Ukrainian and English, its order (exact tier, then loose; newest first), highlights,
paging, room filter, and that edits and deletes through MessageService re-index."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.core.errors import AppError
from gateway.core.events import CityHooks
from gateway.core.messages import Author, MessageService
from gateway.core.search import QUERY_MAX_CHARS, SearchPage, SearchService
from gateway.core.storage import search as search_sql
from gateway.infra import db as database_pool

ROOM = "room_city_search"
OTHER = "room_city_other"
ALICE = Author(user_id="u_alice")


@pytest.fixture
async def pool(db: asyncpg.Connection, database: str) -> AsyncIterator[asyncpg.Pool]:
    for room, slug in ((ROOM, "search"), (OTHER, "other")):
        await db.execute("insert into city_rooms (id, slug, name) values ($1, $2, $2)", room, slug)
    p = await database_pool.create_pool(database, 4)
    yield p
    await p.close()


@pytest.fixture
def messages(pool: asyncpg.Pool) -> MessageService:
    return MessageService(pool, CityHooks(), max_chars=4000)


@pytest.fixture
def search(pool: asyncpg.Pool) -> SearchService:
    return SearchService(pool)


async def _post(messages: MessageService, body: str, room: str = ROOM) -> str:
    return (await messages.post(room, ALICE, body)).message.id


def _bodies(page: SearchPage) -> list[str]:
    return [hit.message.body for hit in page.results]


async def test_ukrainian_inflected_forms_find_each_other(
    messages: MessageService, search: SearchService
) -> None:
    """The light Ukrainian stemmer: one ending stripped, the stem matched as a prefix."""
    await _post(messages, "Нова кімната для зустрічей")
    await _post(messages, "Ми зібралися в кімнаті на третьому поверсі")
    await _post(messages, "Розмовляли перед кімнатою")
    await _post(messages, "Про погоду")
    for query in ("кімнати", "кімната", "Кімнатою"):
        found = _bodies(await search.search(query))
        assert sorted(found) == sorted(
            [
                "Нова кімната для зустрічей",
                "Ми зібралися в кімнаті на третьому поверсі",
                "Розмовляли перед кімнатою",
            ]
        ), query
    assert _bodies(await search.search("місто")) == []


async def test_english_stemming_and_stop_words(
    messages: MessageService, search: SearchService
) -> None:
    await _post(messages, "The rooms were running late")
    await _post(messages, "a room with a view")
    assert sorted(_bodies(await search.search("room"))) == [
        "The rooms were running late",
        "a room with a view",
    ]
    assert _bodies(await search.search("runs")) == ["The rooms were running late"]
    only_stop_words = await search.search("the with a")
    assert only_stop_words.results == [] and only_stop_words.next is None


async def test_exact_forms_rank_first_then_newest(
    messages: MessageService, search: SearchService
) -> None:
    exact_old = await _post(messages, "велике місто вночі")
    inflected_new = await _post(messages, "у великому місті тихо")
    scattered = await _post(messages, "місто велике")
    half = await _post(messages, "велике місті")
    exact_new = await _post(messages, "знову велике місто")
    page = await search.search("велике місто")
    # Tier 1: both words in the forms typed, newest first; tier 2: the rest.
    assert [h.message.id for h in page.results] == [
        exact_new,
        scattered,
        exact_old,
        half,
        inflected_new,
    ]
    # A quoted phrase is a phrase: as typed first, then inflected (on the stems).
    quoted = await search.search('"велике місто"')
    assert [h.message.id for h in quoted.results] == [exact_new, exact_old, half, inflected_new]
    # English words only: one tier, simply newest first.
    first = await _post(messages, "city lights")
    second = await _post(messages, "a city at night")
    assert [h.message.id for h in (await search.search("city")).results] == [second, first]


async def test_highlight_escapes_html_and_marks_matches(
    messages: MessageService, search: SearchService
) -> None:
    await _post(messages, 'Нова кімната <script>alert("x")</script> & <mark>fake</mark> room')
    (hit,) = (await search.search("кімнати room")).results
    assert hit.highlight == (
        "Нова <mark>кімната</mark> &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        " &amp; &lt;mark&gt;fake&lt;/mark&gt; <mark>room</mark>"
    )
    assert hit.message.body.startswith("Нова кімната <script>")  # the message is as sent
    long_body = " ".join(["слово"] * 200 + ["кімната"] + ["слово"] * 200)
    await _post(messages, long_body)
    hits = (await search.search("кімната")).results
    fragment = next(h.highlight for h in hits if h.message.body == long_body)
    assert "<mark>кімната</mark>" in fragment and len(fragment) < len(long_body) // 4


async def test_pages_have_no_duplicates_or_gaps_across_tiers(
    messages: MessageService, search: SearchService
) -> None:
    ids = set()
    for i in range(13):  # tier 1 (exact forms) and tier 2 (inflected) interleaved in time
        body = f"зелене місто {i}" if i % 3 else f"у зеленому місті {i}"
        ids.add(await _post(messages, body))
    await _post(messages, "нічого спільного")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await search.search("зелене місто", limit=4, before=cursor)
        seen += [h.message.id for h in page.results]
        pages += 1
        if page.next is None:
            break
        # A message posted while paging does not join this search.
        await _post(messages, f"зелене місто пізніше {pages}")
        cursor = page.next
    assert len(seen) == len(set(seen)) == 13 and set(seen) == ids
    assert pages == 4
    for limit in (1, 5, 13, 100):  # page boundaries at and around the tier boundary
        collected: list[str] = []
        cursor = None
        while True:
            page = await search.search("зелене місто", limit=limit, before=cursor)
            collected += [h.message.id for h in page.results]
            if page.next is None:
                break
            cursor = page.next
        assert len(collected) == len(set(collected)) >= 13, limit


async def test_rare_words_below_the_probe_window(
    messages: MessageService, search: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matches older than the newest WINDOW_ROWS (ROOM_WINDOW_ROWS with a room filter)
    messages come from the GIN step, in the same order and pages as from the window
    (gateway.core.storage.search)."""
    monkeypatch.setattr(search_sql, "WINDOW_ROWS", 3)
    monkeypatch.setattr(search_sql, "ROOM_WINDOW_ROWS", 2)
    old = [await _post(messages, f"рідкісне слово {i}") for i in range(5)]
    old_other = await _post(messages, "рідкісне в іншій кімнаті", room=OTHER)
    for i in range(7):
        await _post(messages, f"щось інше {i}")
    newest = await _post(messages, "ще одне рідкісне")
    everything: list[str] = []
    cursor: str | None = None
    while True:
        page = await search.search("рідкісний", limit=2, before=cursor)
        everything += [h.message.id for h in page.results]
        if page.next is None:
            break
        cursor = page.next
    assert everything == [newest, old_other, *reversed(old)]
    in_room = await search.search("рідкісне", room_id=ROOM, limit=10)
    assert [h.message.id for h in in_room.results] == [newest, *reversed(old)]


async def test_both_tiers_below_the_probe_window(
    messages: MessageService, search: SearchService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first page whose matches of both tiers are older than the window: one GIN pass
    labels each with its tier; the pages (and where tier 2 starts) are the same as
    tier by tier, whatever the limit, with and without a room filter."""
    monkeypatch.setattr(search_sql, "WINDOW_ROWS", 4)
    monkeypatch.setattr(search_sql, "ROOM_WINDOW_ROWS", 3)
    exact, inflected, elsewhere, tier1 = [], [], [], []  # each in the order posted
    for i in range(9):
        if i % 3 == 2:
            elsewhere.append(await _post(messages, f"зелене місто {i}", room=OTHER))
            tier1.append(elsewhere[-1])
        elif i % 2:
            exact.append(await _post(messages, f"зелене місто {i}"))
            tier1.append(exact[-1])
        else:
            inflected.append(await _post(messages, f"у зеленому місті {i}"))
    for i in range(6):
        await _post(messages, f"щось інше {i}")
    everywhere = [*reversed(tier1), *reversed(inflected)]
    in_room = [*reversed(exact), *reversed(inflected)]
    for room, expected in ((None, everywhere), (ROOM, in_room)):
        for limit in (1, 2, len(exact), len(exact) + len(elsewhere), 4, 100):
            collected: list[str] = []
            cursor: str | None = None
            while True:
                page = await search.search("зелене місто", room_id=room, limit=limit, before=cursor)
                collected += [h.message.id for h in page.results]
                if page.next is None:
                    break
                cursor = page.next
            assert collected == expected, (room, limit)
    # Newest matches all tier 1: the window's page as it is, then on in tier 1.
    newer = [await _post(messages, f"зелене місто знову {i}") for i in range(3)]
    page = await search.search("зелене місто", limit=2)
    assert [h.message.id for h in page.results] == newer[:0:-1]
    page = await search.search("зелене місто", limit=2, before=page.next)
    assert [h.message.id for h in page.results] == [newer[0], everywhere[0]]


async def test_room_filter_and_unknown_room(
    messages: MessageService, search: SearchService
) -> None:
    here = await _post(messages, "зустріч у парку")
    await _post(messages, "зустріч у кафе", room=OTHER)
    page = await search.search("зустріч", room_id=ROOM)
    assert [h.message.id for h in page.results] == [here]
    first = await search.search("зустріч", limit=1)
    assert len(first.results) == 1 and first.next is not None
    with pytest.raises(AppError) as err:  # a cursor belongs to its query and room
        await search.search("зустріч", room_id=ROOM, before=first.next)
    assert (err.value.status, err.value.code) == (422, "invalid_cursor")
    assert len((await search.search("зустріч")).results) == 2
    with pytest.raises(AppError) as err:
        await search.search("зустріч", room_id="room_city_nope")
    assert (err.value.status, err.value.code) == (404, "room_not_found")


async def test_edit_reindexes_and_delete_removes(
    messages: MessageService, search: SearchService
) -> None:
    message_id = await _post(messages, "стара назва")
    assert len((await search.search("стара")).results) == 1
    await messages.edit(message_id, "нова назва")
    assert (await search.search("стара")).results == []
    (hit,) = (await search.search("нова")).results
    assert hit.message.id == message_id and hit.highlight == "<mark>нова</mark> назва"
    await messages.delete(message_id)
    assert (await search.search("нова")).results == []
    assert (await search.search("назва")).results == []


async def test_matrix_authored_messages_are_found(
    messages: MessageService, search: SearchService
) -> None:
    posted = await messages.post(
        ROOM,
        Author(matrix_id="@olena:matrix.example"),
        "Привіт з Element, друзі",
        source="matrix",
        matrix_event_id="$evt1",
    )
    (hit,) = (await search.search("друзів")).results
    assert hit.message.id == posted.message.id
    assert hit.message.author_matrix_id == "@olena:matrix.example"


async def test_bad_input(search: SearchService) -> None:
    cases = [
        ({"q": "   "}, "empty_query"),
        ({"q": "x" * (QUERY_MAX_CHARS + 1)}, "query_too_long"),
        ({"q": "a\x00b"}, "invalid_input"),
        ({"q": "місто", "before": "not-a-cursor"}, "invalid_cursor"),
        ({"q": "місто", "limit": 0}, "invalid_limit"),
    ]
    for kwargs, code in cases:
        with pytest.raises(AppError) as err:
            await search.search(**kwargs)  # type: ignore[arg-type]
        assert (err.value.status, err.value.code) == (422, code), kwargs
    # websearch syntax never fails, whatever the user types.
    for q in ('"unclosed', "-", "or or", "!!& | (", "a:* & b", "'''", "\\"):
        page = await search.search(q)
        assert page.results == []
