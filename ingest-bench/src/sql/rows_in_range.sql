-- The rows of a ts range as the aggregates count them (growth.rs), to add rows that were loaded
-- with SQL to the aggregates the way the worker adds what it inserts.
--
--   $1 timestamptz  the first ts
--   $2 timestamptz  the first ts after the range
SELECT from_msisdn, to_msisdn, ts
FROM messages
WHERE ts >= $1 AND ts < $2
