-- The updates of each aggregate table so far and how many of them were HOT (no index entry
-- written), as one JSON object, for scripts/bench-upkeep.sh to take differences of. The counters
-- are the statistics system's; a backend reports its own when its transaction ends, and the
-- script reads them after the worker exited.
SELECT json_object_agg(relname, json_build_object('upd', n_tup_upd, 'hot', n_tup_hot_upd))
FROM pg_stat_user_tables
WHERE relname IN ('sender_stats', 'recipient_stats', 'message_hours', 'message_days', 'message_totals');
