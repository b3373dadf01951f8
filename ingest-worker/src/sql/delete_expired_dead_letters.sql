-- Deletes one batch of expired dead letters, the longest unseen first.
--
--   $1 int     DEAD_LETTER_RETENTION_DAYS: dead letters last seen longer ago than this many days
--              are expired
--   $2 bigint  RETENTION_BATCH_SIZE: the most rows this statement deletes
--
-- Returns nothing but the count (no aggregate counts dead letters). The same shape as
-- delete_expired.sql: oldest first through the (last_seen, id) index, SKIP LOCKED so several
-- workers take disjoint batches, and a ctid TID scan for the outer DELETE.
DELETE FROM dead_letters
WHERE ctid IN (
    SELECT ctid FROM dead_letters
    WHERE last_seen < now() - make_interval(days => $1)
    ORDER BY last_seen, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
);
