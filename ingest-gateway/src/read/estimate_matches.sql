-- Postgres's estimate of the messages matching the filters of page_with_counted_total.sql (the
-- statistics its planner uses), read from the top node of the plan; nothing is executed.
--
--   $1 from, $2 to, $3 since, $4 until, $5 the ILIKE pattern; NULL when not given
EXPLAIN (FORMAT JSON)
SELECT 1 FROM messages m
WHERE ($1::text IS NULL OR m.from_msisdn = $1)
  AND ($2::text IS NULL OR m.to_msisdn = $2)
  AND ($3::timestamptz IS NULL OR m.ts >= $3)
  AND ($4::timestamptz IS NULL OR m.ts < $4)
  AND ($5::text IS NULL OR m.text ILIKE $5)
