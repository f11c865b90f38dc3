-- Reactions, and city-side edits, deletes and reactions sent to Matrix (SPEC §13).

-- A reaction of one person (a city user or a Matrix user) with one key on one
-- message. Core-owned. The unique index makes PUT idempotent (the same reactor, key
-- and message once), and its leading column serves the per-page aggregate
-- (`where message_id = any($1) group by message_id, key`). `matrix_event_id` is the
-- reaction's `m.reaction` event: the Element user's (inbound, also the inbox's
-- dedupe key) or our ghost's (recorded once the outbox has sent it).
create table city_message_reactions (
    id              bigint generated always as identity primary key,
    message_id      text not null references city_room_messages(id) on delete cascade,
    room_id         text not null,
    key             text not null,
    user_id         text null,                      -- u_* (a city reaction)
    matrix_user_id  text null,                      -- @user:server (from Matrix)
    matrix_event_id text null unique,
    created_at      timestamptz not null default now(),
    check ((user_id is null) <> (matrix_user_id is null))
);
create unique index ux_city_message_reactions_reactor
    on city_message_reactions (message_id, key, (coalesce(user_id, matrix_user_id)));

-- Edits and flags of messages. `edited_at` is set by every edit (city or Matrix).
alter table city_room_messages add column if not exists edited_at timestamptz null;

-- The outbox carries more than messages now (bridge/outbox_ops.py): `kind` is
-- 'message' (send the message), 'edit' (m.replace), 'redact' (redact the message's
-- event), 'react' (m.reaction annotation) or 'unreact' (redact the reaction's event).
--
-- `seq` orders a room's rows: a message row takes its message's seq (set by the
-- queue statement, else looked up here); any other row takes a fresh value of the same sequence, drawn by the trigger below under the
-- room's shared advisory lock as messages do (0004_room_order.sql), so the sender's
-- exclusive wait covers these rows too and a change is sent after everything queued
-- in its room before it — the message it changes first of all.
alter table matrix_outbox
    add column seq             bigint null,
    -- Stable and unique across database resets (Synapse keeps its events): the txnId
    -- of the change's send, and the marker looked for after an uncertain send.
    add column op_key          text not null default 'op_' || replace(gen_random_uuid()::text, '-', ''),
    -- The city user acting (the author editing or deleting, the reactor): the ghost
    -- that sends the change. Null for message rows (the message says who).
    add column actor_user_id   text null,
    -- city_message_reactions.id of a react/unreact row.
    add column reaction_id     bigint null,
    -- The Matrix event a redaction removes, when known at queue time (or learned
    -- when the event it targets is sent while the redaction waits).
    add column target_event_id text null,
    -- What else the change needs: {"body"} for an edit, {"key"} for a reaction.
    add column payload         jsonb null;

update matrix_outbox o set seq = m.seq from city_room_messages m where m.id = o.message_id;
update matrix_outbox set seq = 0 where seq is null;  -- message gone: dropped when reached

create function matrix_outbox_ordered_seq() returns trigger
language plpgsql as $$
begin
    if new.seq is null and new.kind = 'message' then
        -- A message row queued by its own statement (not as a CTE of the insert,
        -- whose snapshot could not see the message): its message's seq.
        select m.seq into new.seq from city_room_messages m where m.id = new.message_id;
    end if;
    if new.seq is null then
        perform pg_advisory_xact_lock_shared(hashtextextended('city_room_seq:' || new.room_id, 0));
        new.seq := nextval(pg_get_serial_sequence('city_room_messages', 'seq'));
    end if;
    return new;
end
$$;

create trigger matrix_outbox_ordered_seq
    before insert on matrix_outbox
    for each row execute function matrix_outbox_ordered_seq();

alter table matrix_outbox alter column seq set not null;
create index ix_matrix_outbox_room_seq on matrix_outbox (room_id, seq, id);
-- Pending changes of a message (a redaction waiting for the event id of its message).
create index ix_matrix_outbox_message on matrix_outbox (message_id);
