-- The partitions of `messages` whose part of the search index is missing (search_index/mod.rs),
-- and the statements that bring each in line, to run in this order outside any transaction
-- (CONCURRENTLY requires it). No parameters. One row per partition, by name:
--   partition     the partition
--   drop_invalid  DROP INDEX CONCURRENTLY of its part left INVALID by an interrupted build;
--                 NULL when there is none (IF NOT EXISTS below would skip such an index)
--   build         CREATE INDEX CONCURRENTLY of its part: writes to the partition go on
--   attach        ALTER INDEX ... ATTACH PARTITION, after which the parent's index is valid once
--                 no partition lacks its part
-- The statements are built here, with the names quoted by format(%I), because CREATE INDEX
-- CONCURRENTLY cannot run inside a function.
SELECT c.relname::text AS "partition!",
       CASE WHEN x.indexrelid IS NOT NULL AND NOT x.indisvalid
            THEN format('DROP INDEX CONCURRENTLY IF EXISTS %I', n.name) END AS drop_invalid,
       format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON %I USING gin (text gin_trgm_ops)',
              n.name, c.relname) AS "build!",
       format('ALTER INDEX messages_text_trgm_idx ATTACH PARTITION %I', n.name) AS "attach!"
FROM pg_inherits t
JOIN pg_class c ON c.oid = t.inhrelid
CROSS JOIN LATERAL (SELECT c.relname || '_text_trgm_idx' AS name) AS n
LEFT JOIN pg_index x ON x.indexrelid = to_regclass(n.name)
WHERE t.inhparent = 'messages'::regclass
  AND NOT EXISTS (
      SELECT 1 FROM pg_index pi JOIN pg_inherits ii ON ii.inhrelid = pi.indexrelid
      WHERE pi.indrelid = c.oid AND ii.inhparent = 'messages_text_trgm_idx'::regclass
  )
ORDER BY c.relname
