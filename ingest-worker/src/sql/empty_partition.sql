-- Empties an expired partition (retention.rs), the last statement of the transaction that has
-- closed it to writers and taken its rows out of message_ids and the aggregates.
--
--   $1 text  the partition's name
--
-- empty_message_partition (migration 20261204000009) is a TRUNCATE: ACCESS EXCLUSIVE on that
-- partition alone until the commit, a moment whatever its size; readers of other partitions
-- never wait.
SELECT empty_message_partition($1)
