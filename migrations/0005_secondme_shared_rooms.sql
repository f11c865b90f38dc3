-- Second Me: a third kind of reply claim, 'matrix_room' — a Matrix room that is not
-- bridged and has more members than the asker and Second Me. Like a city room it is
-- shared: its reply takes the room's recent messages as context, never the asker's
-- private history ('matrix_dm' stays the private kind).
alter table secondme_replies drop constraint if exists secondme_replies_kind_check;
alter table secondme_replies add constraint secondme_replies_kind_check
    check (kind in ('city_room', 'matrix_dm', 'matrix_room'));
