-- Deletes one batch of expired messages, oldest first.
--
--   $1 int     RETENTION_DAYS: messages whose ts is older than this many days are expired
--   $2 bigint  RETENTION_BATCH_SIZE: the most rows this statement deletes
--
-- Returns the messages deleted (`from_msisdn`, `to_msisdn`, `ts`), which the same transaction
-- then takes out of the aggregates (shared/src/read_model/apply_changes.sql).
--
-- Oldest first, so an interrupted pass has removed the most expired rows. `ORDER BY ts` also
-- walks the `(ts, message_id)` index instead of re-scanning the dead tuples earlier batches left
-- at the head of the heap. `SKIP LOCKED` lets several workers run passes at once without queueing
-- on each other's rows: each takes a disjoint batch. `ctid IN (...)` is planned as a TID scan, so
-- the outer DELETE touches exactly the chosen rows.
DELETE FROM messages
WHERE ctid IN (
    SELECT ctid FROM messages
    WHERE ts < now() - make_interval(days => $1)
    ORDER BY ts
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING from_msisdn, to_msisdn, ts;
