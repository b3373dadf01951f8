-- Drops an expired partition (retention.rs), the last statement before the commit of the
-- transaction that took its rows out of the aggregates and message_ids.
--
--   $1 text  the partition's name
--
-- drop_message_partition (migration 20261204000009) refuses anything but a partition of
-- `messages` other than the default one. DROP TABLE of a partition takes ACCESS EXCLUSIVE on
-- `messages` until the commit: reads wait from here on, for a catalog change and the removal of
-- the partition's files, however many rows it had.
SELECT drop_message_partition($1)
