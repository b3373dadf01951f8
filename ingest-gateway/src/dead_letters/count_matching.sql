-- How many dead letters match the filters (the `remaining` of a bulk redrive); $1..$3 as in
-- page.sql.
SELECT count(*)
FROM dead_letters
WHERE ($1::text IS NULL OR reason ILIKE $1)
  AND ($2::timestamptz IS NULL OR last_seen >= $2)
  AND ($3::timestamptz IS NULL OR last_seen < $3);
