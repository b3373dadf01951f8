-- Deletes one batch of expired messages, oldest first, and their ids.
--
--   $1 int     RETENTION_DAYS: messages whose ts is older than this many days are expired
--   $2 bigint  RETENTION_BATCH_SIZE: the most rows this statement deletes
--
-- Returns the messages deleted (`from_msisdn`, `to_msisdn`, `ts`), which the same transaction
-- then takes out of the aggregates (shared/src/read_model/apply_changes.sql).
--
-- The rows left after whole expired partitions are dropped (retention.rs): the expired part of
-- the partition that straddles the cutoff, and outliers in the default partition. Their ids leave
-- message_ids in the same statement, so a re-send after this is stored again, as a new message.
--
-- Oldest first, so an interrupted pass has removed the most expired rows; `ORDER BY ts` walks the
-- `(ts, message_id)` index of the partitions the cutoff leaves (the others are pruned).
-- `SKIP LOCKED` lets several workers run passes at once without queueing on each other's rows:
-- each takes a disjoint batch. The rows are named by `(ts, message_id)`, not by ctid, which is
-- only unique within one partition. The ids go as one array, so they are looked up in the
-- primary key of message_ids whatever the planner guesses of the batch's size.
WITH gone AS (
    DELETE FROM messages
    WHERE (ts, message_id) IN (
        SELECT ts, message_id FROM messages
        WHERE ts < now() - make_interval(days => $1)
        ORDER BY ts
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    RETURNING message_id, from_msisdn, to_msisdn, ts
),
ids AS (
    DELETE FROM message_ids WHERE message_id = ANY (ARRAY(SELECT message_id FROM gone))
)
SELECT from_msisdn, to_msisdn, ts FROM gone
