-- The primary's WAL position now, as bytes from the start of the WAL, so positions compare and
-- subtract as integers. No parameters.
--
-- Every transaction committed before this statement ended at or below it (a commit waits for
-- its WAL to be written), so a replica that has replayed this far has every such row.
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS "lsn!"
