-- Removes ids from the narrow `message_ids` table of the partitioned schema (growth.rs); only
-- run when that table exists.
--
--   $1 text[]  the message ids removed from `messages`
DELETE FROM message_ids WHERE message_id = ANY($1)
