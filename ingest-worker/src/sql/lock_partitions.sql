-- The first statement of the transaction that drops an expired partition (retention.rs): the
-- partition lock (lock_message_partitions, migration 20261204000009), so no other worker drops
-- or creates a partition meanwhile; waits for it. No parameters.
SELECT lock_message_partitions(true) AS locked
