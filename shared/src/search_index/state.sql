-- The state of the trigram search index `messages_text_trgm_idx` (search_index/mod.rs,
-- `IndexState`). No parameters. One row, one column `state`:
--   'trigram'   the index exists and is valid: q= uses it
--   'building'  it exists, not yet valid, and a CREATE INDEX is building it now (or another
--               role's session in this database is building an index: Postgres hides which
--               from roles without pg_read_all_stats, so such a build counts, to be safe)
--   'invalid'   it exists and is not valid, and nothing is building it: left by an interrupted
--               CREATE INDEX CONCURRENTLY, or a DROP INDEX CONCURRENTLY is under way
--   'none'      there is no such index
--   NULL        the messages table does not exist yet (migrations have not run)
SELECT CASE
    WHEN to_regclass('messages') IS NULL THEN NULL
    WHEN i.indexrelid IS NULL THEN 'none'
    WHEN i.indisvalid THEN 'trigram'
    WHEN EXISTS (
        SELECT 1 FROM pg_stat_progress_create_index p
        WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (p.index_relid = i.indexrelid OR p.relid IS NULL)
    ) THEN 'building'
    ELSE 'invalid'
END AS state
FROM (SELECT to_regclass('messages_text_trgm_idx') AS oid) AS named
LEFT JOIN pg_index i ON i.indexrelid = named.oid
