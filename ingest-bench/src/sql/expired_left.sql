-- Rows older than a cutoff that retention has not removed yet (growth.rs).
--
--   $1 timestamptz  the cutoff
SELECT count(*) AS "rows!" FROM messages WHERE ts < $1
