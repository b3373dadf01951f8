-- What an expired partition's rows add to the aggregates, counted per key in one scan
-- (retention.rs takes exactly this out of them, through read_model::upkeep, in the transaction
-- that has closed the partition to writers and then empties it).
--
--   $1 timestamptz  the partition's lower bound; NULL from MINVALUE
--   $2 timestamptz  the partition's upper bound
--
-- One row per sender (`from_msisdn` set), per recipient (`to_msisdn` set) and per UTC hour of ts
-- (`hour` set), with `n` the rows counted under it; the other two columns are NULL (they are
-- NOT NULL in messages, so NULL only ever means "not grouped by"; "x?" tells the compile-time
-- check, which takes them for the table's NOT NULL columns).
SELECT from_msisdn AS "from_msisdn?", to_msisdn AS "to_msisdn?",
       date_trunc('hour', ts, 'UTC') AS "hour?", count(*) AS "n!"
FROM messages
WHERE ($1::timestamptz IS NULL OR ts >= $1) AND ts < $2
GROUP BY GROUPING SETS ((from_msisdn), (to_msisdn), (date_trunc('hour', ts, 'UTC')))
