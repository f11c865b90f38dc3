-- Matrix order = city order (SPEC §12). The outbox sends a room's messages in the
-- order of `city_room_messages.seq`, but a sequence value is taken before the row
-- commits: two concurrent posts can take seq 10 and 11 and commit 11 first, and an
-- outbox worker that looks in between would send 11 before 10 exists.
--
-- So every insert into a room holds a shared per-room advisory lock from *before* its
-- seq is taken until it commits, and the outbox worker takes the same lock
-- exclusively (and releases it at once) before reading a room's head: that waits for
-- every insert that already has a seq, and any later insert gets a higher seq.
-- The identity default is computed before a BEFORE ROW trigger runs, so the trigger
-- takes the lock and then draws a fresh seq (the first value is simply skipped).

create function city_room_messages_ordered_seq() returns trigger
language plpgsql as $$
begin
    perform pg_advisory_xact_lock_shared(hashtextextended('city_room_seq:' || new.room_id, 0));
    new.seq := nextval(pg_get_serial_sequence('city_room_messages', 'seq'));
    return new;
end
$$;

create trigger city_room_messages_ordered_seq
    before insert on city_room_messages
    for each row execute function city_room_messages_ordered_seq();
