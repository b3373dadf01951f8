-- The parts of the search index left on partitions of `messages` without being attached to the
-- parent's index (an interrupted switch), as the statements that drop them, to run outside any
-- transaction (search_index/mod.rs). No parameters. One row, `drop`, per such index. Neither
-- reads nor writes wait for them.
SELECT format('DROP INDEX CONCURRENTLY IF EXISTS %I', x.relname) AS "drop!"
FROM pg_inherits t
JOIN pg_class c ON c.oid = t.inhrelid
JOIN pg_class x ON x.oid = to_regclass(c.relname || '_text_trgm_idx')
WHERE t.inhparent = 'messages'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_inherits ii WHERE ii.inhrelid = x.oid)
ORDER BY x.relname
