-- Stores a batch: its messages and its dead letters, in one round trip.
--
-- Messages, one array element per message, all arrays the same length:
--   $1 text[]         message_id
--   $2 text[]         from_msisdn
--   $3 text[]         to_msisdn
--   $4 timestamptz[]  ts
--   $5 text[]         ts_raw
--   $6 text[]         text (NULL for a message without one)
--   $7 bigint[]       stream_seq
--   $8 text[]         msg_type (NULL when the payload named none)
-- Dead letters, one array element per dead letter, all arrays the same length:
--   $9  bigint[]      stream_seq
--   $10 text[]        subject
--   $11 bytea[]       payload
--   $12 text[]        reason
--   $13 text[]        request_id (NULL when the message carried none)
--
-- Returns the messages really inserted (`from_msisdn`, `to_msisdn`, `ts`), which the same
-- transaction then applies to the aggregates (shared/src/read_model/apply_changes.sql).
--
-- `ON CONFLICT DO NOTHING` makes a redelivered message change nothing and tolerates an id
-- repeated inside the batch, and `RETURNING` leaves both out, so the aggregates count each
-- message once however often it is delivered. Messages are inserted sorted by id so that two
-- batches sharing ids wait for each other in one order.
WITH dead AS (
    INSERT INTO dead_letters (stream_seq, subject, payload, reason, request_id)
    SELECT * FROM UNNEST($9::bigint[], $10::text[], $11::bytea[], $12::text[], $13::text[])
)
INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq, msg_type)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::bigint[], $8::text[]) AS u(message_id)
ORDER BY u.message_id
ON CONFLICT (message_id) DO NOTHING
RETURNING from_msisdn, to_msisdn, ts;
