-- Postgres's estimate of the messages matching the filters of page_with_counted_total.sql (the
-- statistics its planner uses), read from the top node of the plan; nothing is executed.
--
--   $1 from, $2 to, $3 since, $4 until, $5 the ILIKE pattern, $6 source; NULL when not given
EXPLAIN (FORMAT JSON)
SELECT 1 FROM messages_matching($1, $2, $3, $4, $5, $6) m
