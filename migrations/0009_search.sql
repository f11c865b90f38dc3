-- Full-text search over room messages (SPEC §13 "Search"; gateway/core/search.py).
--
-- Languages. PostgreSQL 15 ships no Ukrainian configuration (no Snowball stemmer,
-- no dictionary files), so `city_search` is the English configuration with every
-- word that is not plain ASCII (Cyrillic: Ukrainian, also Russian) mapped to the
-- `simple` dictionary: English words are stemmed with English stop words removed,
-- Ukrainian words are indexed lower-cased and whole. On top of that a light
-- Ukrainian stemmer written here in SQL (`city_search_uk_stem`: one common ending
-- removed) adds the stem of every Cyrillic word of 4+ letters to the vector (a
-- second half of it, with positions, so quoted phrases work on stems), and the
-- query side (`city_search_loose`) looks Cyrillic words up by the same stem:
-- кімнати, кімната, кімнаті, кімнатою all index and query as 'кімнат'. Stems are
-- exact lexemes, not prefix matches, so the planner's statistics apply (a prefix
-- query of a word that occurs nowhere was estimated common enough for a backward
-- walk of the whole table: bench/search.py, first run). Nothing here needs a file in the
-- server's sharedir, so a clean CI machine runs it as is. A Hunspell dictionary
-- (Debian's hunspell-uk converted for the ispell template) would stem better but
-- needs files installed into $(pg_config --sharedir)/tsearch_data on every server
-- and is loaded by every backend; see docs/api.md "Search".
--
-- Index. A stored generated column, so edits re-index in the same UPDATE and
-- deletes take the entry with the row; a GIN index answers @@. Adding the column
-- rewrites city_room_messages once (an ACCESS EXCLUSIVE lock for the rewrite).
-- The GIN index is on (room_id, search_tsv) — btree_gin, a trusted extension in
-- PostgreSQL's contrib (any image with contrib: the official ones, Debian's
-- postgresql-15) — so a room filter is one more posting list intersected inside
-- the index: a word common in other rooms but rare in this one costs its matches
-- here, not a recheck of all of them (bench/search.py). Without a room_id
-- condition the index is used as a plain tsvector GIN index.
-- `ix_city_room_messages_seq` lets "newest matches first" walk seq backwards when a
-- word is very common (and gives the max(seq) a result set is bounded by).
-- Lower-casing follows the database's LC_CTYPE (C.UTF-8 / *.UTF-8 handle Cyrillic).

create text search configuration city_search (copy = english);
alter text search configuration city_search
    alter mapping for word, hword, hword_part with simple;

-- One Ukrainian word -> its query stem: the longest of these endings is removed as
-- long as 3 letters remain. Deliberately light (no stem alternation: кіт/кота).
create function city_search_uk_stem(word text) returns text
language sql immutable strict parallel safe as $$
    select case
        when char_length(word) < 4 then word
        else regexp_replace(
            word,
            '^(.{3,}?)(ями|ами|ові|еві|ого|ому|ими|іми|ої|ій|ою|ею|ах|ях|ам|ям|ом|ем|ів|їв'
            '|ий|их|им|ім|ся|а|я|и|і|ї|й|у|ю|о|е|є|ь)$',
            '\1')
    end
$$;

-- The text's vector again with every Cyrillic word of 4+ letters replaced by its
-- stem (other lexemes as they are), positions kept but moved 100 past the plain
-- vector's (`||` appends after its last position): a quoted phrase then matches on
-- stems too, and never across the seam of the two halves.
create function city_search_uk_stems(body text) returns tsvector
language sql immutable strict parallel safe as $$
    select coalesce(string_agg(
               '''' || replace(replace(
                   case when lexeme ~ '^[а-щьюяєіїґ]{4,}$' then city_search_uk_stem(lexeme)
                        else lexeme end,
                   '\', '\\'), '''', '''''') || ''':'
               || (select string_agg((p + 100)::text, ',') from unnest(positions) p),
               ' ')::tsvector,
           ''::tsvector)
    from unnest(to_tsvector('city_search'::regconfig, body))
$$;

-- A parsed query (websearch_to_tsquery's output) with each Cyrillic lexeme of 4+
-- letters replaced by its stem — with `prefix`, by a prefix match of it (what
-- ts_headline needs to mark the inflected words of a body, which it parses whole).
-- The tsquery's text form quotes every lexeme; only the inside of all-Cyrillic
-- lexemes is rewritten, so the result parses back exactly.
create function city_search_loose(query tsquery, prefix boolean default false)
returns tsquery
language plpgsql immutable strict parallel safe as $$
declare
    src  text := query::text;
    out  text := '';
    part text[];
begin
    for part in
        select regexp_matches(src, '([^'']*)''((?:[^'']|'''')*)''', 'g')
    loop
        out := out || part[1];
        if part[2] ~ '^[а-щьюяєіїґ]{4,}$' then
            out := out || quote_literal(city_search_uk_stem(part[2]))
                       || case when prefix then ':*' else '' end;
        else
            out := out || '''' || part[2] || '''';
        end if;
    end loop;
    out := out || substring(src from '[^'']*$');
    return out::tsquery;
end
$$;

alter table city_room_messages
    add column search_tsv tsvector
    generated always as (
        to_tsvector('city_search'::regconfig, body) || city_search_uk_stems(body)
    ) stored;

create extension if not exists btree_gin;
create index ix_city_room_messages_search on city_room_messages
    using gin (room_id, search_tsv);
create index ix_city_room_messages_seq on city_room_messages (seq);
