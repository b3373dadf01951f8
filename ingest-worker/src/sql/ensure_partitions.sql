-- Creates the partitions of `messages` that should exist and do not (partitions.rs), under the
-- partition lock, in one transaction: see ensure_message_partitions in migration
-- 20261204000009_partitioned_messages.sql for the ranges and the locks.
--
--   $1 text  PARTITION_INTERVAL: 'day', 'week' or 'month'
--   $2 int   PARTITIONS_AHEAD: how many intervals after the current one
--
-- Returns one row per partition created, `name`; none when all were there.
SELECT name AS "name!" FROM ensure_message_partitions($1, $2) AS name
