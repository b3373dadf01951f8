-- The partitions of `messages` whose whole range has expired, oldest first (retention.rs).
--
--   $1 int  RETENTION_DAYS: rows whose ts is older than this many days are expired
--
-- One row per partition: `name`, and its range [`lower_bound`, `upper_bound`) (`lower_bound`
-- NULL: from MINVALUE). Never the default partition, which has no range: its expired rows go row
-- by row (delete_expired.sql).
SELECT p.name AS "name!", p.lower_bound, p.upper_bound AS "upper_bound!"
FROM message_partitions() p
WHERE NOT p.is_default AND p.upper_bound <= now() - make_interval(days => $1)
ORDER BY p.upper_bound
