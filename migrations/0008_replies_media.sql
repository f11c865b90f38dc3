-- Replies and media from Matrix (SPEC §13, issue 11).
--
-- reply_to: the id of the message this one answers, in the same room (checked when
-- the message is posted). Deliberately no foreign key: as in Matrix, a reply keeps
-- pointing at its original after that one is deleted (clients show "deleted"), and
-- deletes and retention sweeps do not have to visit replies.
alter table city_room_messages add column if not exists reply_to text null;

-- attachment: a Matrix m.image / m.file / m.video / m.audio as
-- {kind, name, mimetype, size, server_name, media_id} (gateway/core/models.py
-- Attachment); the API shows its url, /city/media/{server_name}/{media_id}.
alter table city_room_messages add column if not exists attachment jsonb null;

-- GET /city/media/{server_name}/{media_id} serves only media a stored message
-- references (else the gateway would proxy any media of the federation): the lookup
-- by (media_id, server_name). Partial: almost every message has no attachment.
create index if not exists ix_city_room_messages_media
    on city_room_messages ((attachment->>'media_id'), (attachment->>'server_name'))
    where attachment is not null;
