-- How long the drop of an emptied partition may wait for its lock on `messages` (retention.rs,
-- drop_partition.sql): every read that arrives meanwhile queues behind the drop.
SET LOCAL lock_timeout = '200ms'
