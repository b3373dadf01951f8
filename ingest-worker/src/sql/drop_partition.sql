-- Drops an expired partition that retention has emptied (retention.rs), in a transaction of its
-- own with a short lock_timeout.
--
--   $1 text  the partition's name
--
-- DROP TABLE of a partition takes ACCESS EXCLUSIVE on `messages`: it waits for the reads and
-- batches under way, and every later one queues behind it. lock_timeout bounds that queue; a
-- drop that times out leaves the empty partition for the next pass.
SELECT drop_message_partition($1)
