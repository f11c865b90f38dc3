-- City core: rooms, messages, feed, Second Me history, and the Matrix outbox.
-- Tables and indexes named in the original task keep their names and columns;
-- additions are what the contract (SPEC.md) needs on top.

create table city_rooms (
    id              text primary key,               -- "room_city_{slug}"
    slug            text not null unique,
    name            text not null,
    description     text null,
    is_default      boolean not null default false,
    created_at      timestamptz not null default now(),
    created_by      text null,                      -- u_*
    -- Matrix mapping, filled in by the bridge once the Matrix room exists.
    matrix_room_id  text null unique,
    matrix_alias    text null
);
create index ix_city_rooms_slug on city_rooms(slug);

create table city_room_messages (
    id               text primary key,              -- m_city_<ulid>
    room_id          text not null references city_rooms(id) on delete cascade,
    author_user_id   text null,                     -- u_*
    author_agent_id  text null,                     -- ag_*
    body             text not null,
    created_at       timestamptz not null default now(),
    -- Contract additions.
    seq              bigint generated always as identity,  -- stable order and cursor
    author_matrix_id text null,                     -- @user:server for Matrix-side authors
    matrix_event_id  text null unique,              -- the Matrix copy (either direction)
    client_msg_id    text null                      -- retry key chosen by the client
);
create index ix_city_room_messages_room_time on city_room_messages(room_id, created_at desc);
create index ix_city_room_messages_room_seq on city_room_messages(room_id, seq desc);
create unique index ux_city_room_messages_client_msg
    on city_room_messages(author_user_id, client_msg_id)
    where client_msg_id is not null;
create index ix_city_room_messages_created on city_room_messages(created_at);

create table city_feed_events (
    id         text primary key,                    -- evt_city_*
    kind       text not null,                       -- 'room_message','agent_reply','system'
    room_id    text null references city_rooms(id) on delete set null,
    user_id    text null,
    agent_id   text null,
    payload    jsonb not null,
    created_at timestamptz not null default now(),
    seq        bigint generated always as identity  -- cursor for `before=`
);
create index ix_city_feed_time on city_feed_events(created_at desc);
create index ix_city_feed_seq on city_feed_events(seq desc);

create table secondme_sessions (
    id         text primary key,                    -- smsess_*
    user_id    text not null,                       -- u_* (or a Matrix user id for DMs)
    created_at timestamptz not null default now()
);
create index ix_secondme_sessions_user on secondme_sessions(user_id, created_at desc);

create table secondme_messages (
    id         text primary key,                    -- smmsg_*
    session_id text not null references secondme_sessions(id) on delete cascade,
    user_id    text not null,
    role       text not null check (role in ('user','assistant')),
    content    text not null,
    created_at timestamptz not null default now()
);
create index ix_secondme_messages_session_time on secondme_messages(session_id, created_at desc);

-- Transactional outbox: a row per city-side change that Matrix must see, written in
-- the same transaction as the change. The bridge drains it per room, in id order.
create table matrix_outbox (
    id              bigint generated always as identity primary key,
    room_id         text not null references city_rooms(id) on delete cascade,
    message_id      text not null,
    kind            text not null default 'message',
    -- The author's display name as their token gave it when posting, so the
    -- ghost's Matrix display name can follow it without a users table.
    author_name     text null,
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text null,
    created_at      timestamptz not null default now()
);
create index ix_matrix_outbox_room on matrix_outbox(room_id, id);
