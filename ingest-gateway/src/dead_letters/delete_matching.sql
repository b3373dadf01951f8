-- DELETE /admin/dead-letters: every dead letter matching the filters ($1..$3 as in page.sql;
-- all NULL only when the caller said all=true).
DELETE FROM dead_letters
WHERE ($1::text IS NULL OR reason ILIKE $1)
  AND ($2::timestamptz IS NULL OR last_seen >= $2)
  AND ($3::timestamptz IS NULL OR last_seen < $3);
