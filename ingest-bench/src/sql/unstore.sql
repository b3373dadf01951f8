-- Removes the rows of a ts range again (growth.rs), so a seeded database keeps its size.
--
--   $1 timestamptz  the first ts removed
--   $2 timestamptz  the first ts kept after the range
--
-- Returns what the aggregates count by (`from_msisdn`, `to_msisdn`, `ts`), which the same
-- transaction takes out of them with the statement retention uses
-- (shared/src/read_model/apply_changes.sql), and `message_id`, for `message_ids` when the schema
-- has it.
DELETE FROM messages
WHERE ts >= $1 AND ts < $2
RETURNING message_id, from_msisdn, to_msisdn, ts
