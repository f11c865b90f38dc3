-- Matrix bridge (bridge/): the idempotent inbox of events Synapse pushed to us, the
-- ghosts we registered, and what the outbox sender needs on top of 0001's table.

-- Every event of every appservice transaction, keyed by event_id: Synapse re-sends a
-- transaction until we answer 200 and restarts its txn counter when it restarts, so
-- the event id (globally unique) is the only safe key. A row is written and committed
-- before the 200; processing then moves it out of 'pending' exactly once.
create table matrix_inbox (
    event_id     text primary key,
    room_id      text null,                         -- Matrix room id
    sender       text null,
    type         text null,
    event        jsonb not null,
    state        text not null default 'pending'
                 check (state in ('pending', 'done', 'dropped', 'failed')),
    attempts     integer not null default 0,
    detail       text null,                         -- why dropped / last error
    received_at  timestamptz not null default now(),
    processed_at timestamptz null
);
-- The retry sweep looks only at what is still pending.
create index ix_matrix_inbox_pending on matrix_inbox(received_at) where state = 'pending';

-- One row per Matrix user the bridge puppets (city users' ghosts, the bot, Second Me):
-- registered once, display name kept in sync, presence mirrored and refreshed.
create table matrix_ghosts (
    matrix_user_id    text primary key,             -- @city_u_123:S
    city_user_id      text null,                    -- u_123 (null for the bot, Second Me)
    display_name      text null,                    -- as last set on Synapse
    registered_at     timestamptz null,             -- null until Synapse has the user
    -- Presence mirror: the state Matrix should show, whether Synapse has it, and
    -- when it must next be (re)sent. Synapse forgets a non-syncing user's online
    -- state after presence.sync_online_timeout, so online/unavailable are re-sent.
    presence          text not null default 'offline'
                      check (presence in ('online', 'unavailable', 'offline')),
    presence_sent     boolean not null default true,
    presence_due_at   timestamptz null
);
create index ix_matrix_ghosts_presence_due on matrix_ghosts(presence_due_at)
    where presence_due_at is not null;

-- Rooms each of our users has joined, so a join happens once cluster-wide and across
-- restarts (a join is one of Synapse's most expensive calls).
create table matrix_memberships (
    matrix_user_id text not null,
    matrix_room_id text not null,
    joined_at      timestamptz not null default now(),
    primary key (matrix_user_id, matrix_room_id)
);

-- The outbox sender retries a head row whose send may have reached Synapse (timeout,
-- reset, 5xx) only after checking the room for an event carrying the message id:
-- Synapse's txn-id cache is in memory, so a restart in between would otherwise let
-- the same txnId create a second event.
alter table matrix_outbox add column uncertain boolean not null default false;

-- Edits and redactions from Matrix find the feed event of a city message by its id.
create index ix_city_feed_message_id on city_feed_events ((payload->>'message_id'));
