-- Retention of the bridge's inbox (docs/data-retention.md). Processed events are
-- deleted by age (bridge/storage.py prune_inbox, every maintenance sweep; or the
-- batched gateway/core/storage/retention.py prune_inbox). Without an index on
-- received_at for processed rows each sweep was a sequential scan of the whole inbox:
-- measured 0.13 s at 200k rows, ~2.5 s at 2M (bench/history.py --inbox-rows), and
-- the inbox gains a row per bridged Matrix event. Partial: pending rows have their
-- own index (ix_matrix_inbox_pending) and are never pruned.
--
-- Room history and feed pages need no new index (bench/history.py at 10M messages:
-- ix_city_room_messages_room_seq and ix_city_feed_seq serve them); their deep pages
-- need the storage query change described in docs/data-retention.md instead.
create index if not exists ix_matrix_inbox_prune on matrix_inbox (received_at)
    where state <> 'pending';
