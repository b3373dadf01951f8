-- The state of the trigram search index `messages_text_trgm_idx` (search_index/mod.rs,
-- `IndexState`). $1: the search index advisory lock key (`LOCK_KEY`). One row, one column
-- `state`:
--   'trigram'   the index exists on `messages` and is valid: every partition has its part of it,
--               and q= uses it
--   'building'  it is not valid yet and it is being brought in line: a CREATE INDEX is building
--               a partition's part now (or another role's session in this database is building
--               an index: Postgres hides which from roles without pg_read_all_stats, so such a
--               build counts, to be safe), or another session holds the advisory lock, between
--               two partitions
--   'invalid'   it exists and is not valid (some partitions lack their part, or one was left
--               INVALID by an interrupted CREATE INDEX CONCURRENTLY), or it is gone but a
--               partition still has its part, and nothing is at work on it
--   'none'      there is no such index, on `messages` or on any partition
--   NULL        the messages table does not exist yet (migrations have not run)
--
-- A partition's part is named `<partition>_text_trgm_idx` when this module built it; one that
-- Postgres made with the partition is attached to the parent's index and carries its own name.
WITH parts AS (
    SELECT t.inhrelid AS oid, c.relname
    FROM pg_inherits t JOIN pg_class c ON c.oid = t.inhrelid
    WHERE t.inhparent = to_regclass('messages')
)
SELECT CASE
    WHEN to_regclass('messages') IS NULL THEN NULL
    WHEN i.indexrelid IS NULL AND NOT EXISTS (
        SELECT 1 FROM parts WHERE to_regclass(parts.relname || '_text_trgm_idx') IS NOT NULL
    ) THEN 'none'
    WHEN i.indisvalid THEN 'trigram'
    WHEN EXISTS (
        SELECT 1 FROM pg_stat_progress_create_index p
        WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (p.relid IN (SELECT oid FROM parts) OR p.relid IS NULL)
    ) OR EXISTS (
        SELECT 1 FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
          AND l.objsubid = 1
    ) THEN 'building'
    ELSE 'invalid'
END AS state
FROM (SELECT to_regclass('messages_text_trgm_idx') AS oid) AS named
LEFT JOIN pg_index i ON i.indexrelid = named.oid
