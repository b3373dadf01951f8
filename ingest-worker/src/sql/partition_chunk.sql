-- The next chunk of an expired partition's rows, in (ts, message_id) order, and the removal of
-- their ids from message_ids (retention.rs, inside the transaction that then drops the
-- partition).
--
--   $1 timestamptz  the partition's lower bound; NULL from MINVALUE
--   $2 timestamptz  the partition's upper bound
--   $3 timestamptz, $4 text   the last (ts, message_id) of the previous chunk; NULL at first
--   $5 bigint       the most rows in a chunk
--
-- Returns the chunk's rows (`message_id`, `from_msisdn`, `to_msisdn`, `ts`), which the caller
-- takes out of the aggregates. The range selects exactly the partition's rows (ranges do not
-- overlap and the default partition holds none in a partition's range), and Postgres reads only
-- that partition, through its (ts, message_id) index. The ids go as one array, so they are
-- looked up in the primary key of message_ids.
WITH chunk AS (
    SELECT m.message_id, m.from_msisdn, m.to_msisdn, m.ts
    FROM messages m
    WHERE ($1::timestamptz IS NULL OR m.ts >= $1) AND m.ts < $2
      AND ($3::timestamptz IS NULL OR (m.ts, m.message_id) > ($3, $4::text))
    ORDER BY m.ts, m.message_id
    LIMIT $5
),
ids AS (
    DELETE FROM message_ids WHERE message_id = ANY (ARRAY(SELECT message_id FROM chunk))
)
SELECT message_id, from_msisdn, to_msisdn, ts FROM chunk ORDER BY ts, message_id
