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
--   $9 text[]         raw: the validated body, JSON as text (NULL with RAW_PAYLOAD=drop)
-- Dead letters, one array element per distinct payload, all arrays the same length:
--   $10 bigint[]      stream_seq
--   $11 text[]        subject
--   $12 bytea[]       payload
--   $13 text[]        reason
--   $14 text[]        request_id (NULL when the message carried none)
--   $15 text[]        kind: 'invalid' or 'refused' (the advisory path writes 'max_deliveries')
--   $16 text[]        dedup_key: hex SHA-256 of the payload, distinct within the arrays
--   $17 int[]         times: how often the batch holds these bytes
-- And, with the messages' arrays (last, as it was added last):
--   $18 text[]        source: the id of the source it came in through (NULL when not known)
-- And, with the dead letters' arrays (last, as it was added last):
--   $19 text[]        source: as $18, for the dead letter's delivery
--
-- Returns the messages really inserted (`from_msisdn`, `to_msisdn`, `ts`), which the same
-- transaction then applies to the aggregates (shared/src/read_model/apply_changes.sql).
--
-- Exactly once: `messages` is partitioned by ts and cannot hold a unique message_id, so the ids
-- go first into the unpartitioned `message_ids` (migration 20261204000009), with
-- `ON CONFLICT DO NOTHING`, and only the ids that insert really added get their row in
-- `messages`. A redelivered message, or a re-send of the same id with another ts, changes
-- nothing: the first version stored wins. An id repeated inside the batch is taken once, its
-- first occurrence. `RETURNING` leaves out what was not inserted, so the aggregates count each
-- message once however often it is delivered. Ids are inserted sorted so that two batches
-- sharing ids wait for each other in one order; the second waits for the first to commit and
-- then skips the id.
--
-- `raw` travels as text and becomes jsonb only in the final INSERT, so only the rows really
-- inserted pay for the jsonb parse; a duplicate's body is never parsed. The text is the body the
-- worker validated, and the validator refuses what jsonb cannot hold (shared/src/raw.rs).
--
-- A dead letter whose bytes are already there (the same payload failing again, redelivered or
-- redriven) updates that row: last seen now, counted again, the latest reason, sequence, request
-- id and source. The latest source rather than the first, so that the row describes one delivery
-- whole (its request id names the request that brought those bytes through that source), and a
-- redrive republishes the bytes as the source that last sent them; a redriven row that fails
-- again arrives with its own source, so a redrive never changes it. `DO UPDATE` cannot touch one
-- row twice in a statement, so the caller sends each payload once (store.rs: the batch's last
-- occurrence, the latest here too); sorted by key, so two batches wait for each other in one
-- order here too. A redrive deletes its row only if `times` is unchanged since it read it, so the
-- row survives when its bytes came back meanwhile.
WITH dead AS (
    INSERT INTO dead_letters AS d
        (stream_seq, subject, payload, reason, request_id, kind, dedup_key, times, source)
    SELECT * FROM UNNEST($10::bigint[], $11::text[], $12::bytea[], $13::text[], $14::text[],
                         $15::text[], $16::text[], $17::int[], $19::text[])
         AS u(seq, subject, payload, reason, request_id, kind, dedup_key, times, source)
    ORDER BY u.dedup_key
    ON CONFLICT (dedup_key) DO UPDATE SET
        last_seen = now(),
        times = d.times + EXCLUDED.times,
        kind = EXCLUDED.kind,
        reason = EXCLUDED.reason,
        subject = EXCLUDED.subject,
        stream_seq = EXCLUDED.stream_seq,
        request_id = EXCLUDED.request_id,
        source = EXCLUDED.source
),
batch AS (
    SELECT DISTINCT ON (u.message_id) u.*
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                $6::text[], $7::bigint[], $8::text[], $9::text[], $18::text[]) WITH ORDINALITY
         AS u(message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq, msg_type, raw,
              source, nth)
    ORDER BY u.message_id, u.nth
),
new AS (
    INSERT INTO message_ids (message_id, ts)
    SELECT b.message_id, b.ts FROM batch b
    ORDER BY b.message_id
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
)
INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq, msg_type,
                      raw, source)
SELECT b.message_id, b.from_msisdn, b.to_msisdn, b.ts, b.ts_raw, b.text, b.stream_seq, b.msg_type,
       b.raw::jsonb, b.source
FROM batch b JOIN new n ON n.message_id = b.message_id
ORDER BY b.message_id
RETURNING from_msisdn, to_msisdn, ts;
