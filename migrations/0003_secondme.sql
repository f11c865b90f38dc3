-- Second Me: a stable order for history, and claims for replies in rooms.

-- created_at is the transaction's start time, so two messages of one exchange (or
-- two concurrent exchanges) can tie; seq gives history one total order.
alter table secondme_messages add column seq bigint generated always as identity;
create index ix_secondme_messages_session_seq on secondme_messages(session_id, seq desc);

-- One row per room message that asked Second Me for a reply (a city mention, a
-- Matrix mention, a Matrix DM). Inserting the row is the claim: whichever process
-- inserts it first answers, every other process (and every re-sent Matrix
-- transaction) finds it and does nothing. A process that dies while answering
-- leaves the row 'pending' with an expired lease; any process re-claims it then.
create table secondme_replies (
    trigger_id        text primary key,          -- 'city:<message id>' | 'matrix:<event id>'
    kind              text not null check (kind in ('city_room', 'matrix_dm')),
    room_id           text not null,             -- city room id, or the Matrix DM room id
    requester_id      text not null,             -- whose Second Me history: u_* or @user:S
    prompt            text not null,
    -- The prompt's row in secondme_messages, written once even when re-claimed.
    prompt_message_id text null,
    state             text not null default 'pending'
                      check (state in ('pending', 'answered', 'failed')),
    reply_ref         text null,                 -- city message id / Matrix event id posted
    attempts          integer not null default 1,
    lease_until       timestamptz not null,
    created_at        timestamptz not null default now(),
    finished_at       timestamptz null
);
create index ix_secondme_replies_pending on secondme_replies(lease_until) where state = 'pending';
