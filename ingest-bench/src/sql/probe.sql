-- The cheapest read of `messages` (growth.rs): it needs the table's lock like every read and
-- insert, so while something holds the table exclusively it waits, and its latency is how long
-- readers and writers were blocked. No parameters.
SELECT 1 AS one FROM messages LIMIT 1
