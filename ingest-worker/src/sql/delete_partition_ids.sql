-- Takes the ids of an expired partition's rows out of message_ids (retention.rs, in the
-- transaction that has closed the partition to writers and then empties it).
--
--   $1 timestamptz  the partition's lower bound; NULL from MINVALUE
--   $2 timestamptz  the partition's upper bound
--
-- The range selects exactly the partition's rows (ranges do not overlap and the default
-- partition holds none in a partition's range), and Postgres reads only that partition. Each id
-- is one probe of message_ids' primary key. Once this commits, a re-send of one of these ids is
-- stored anew, as after any retention delete.
DELETE FROM message_ids i
USING messages m
WHERE ($1::timestamptz IS NULL OR m.ts >= $1) AND m.ts < $2
  AND i.message_id = m.message_id
