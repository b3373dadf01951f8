-- Whether a message given up on by JetStream is already a dead letter (max_deliveries.rs): a
-- second worker finding the same message writes nothing, so the row counts it once.
--
--   $1 text    dedup_key: hex SHA-256 of the payload
--   $2 bigint  stream_seq of the message
--   $3 text    kind: 'max_deliveries'
SELECT EXISTS (
    SELECT 1 FROM dead_letters WHERE dedup_key = $1 AND stream_seq = $2 AND kind = $3
) AS "moved!";
