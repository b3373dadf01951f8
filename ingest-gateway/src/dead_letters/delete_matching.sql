-- DELETE /admin/dead-letters: every dead letter matching the filters ($1..$3 as in page.sql;
-- all NULL only when the caller said all=true).
DELETE FROM dead_letters d
WHERE dead_letter_matches(d, $1, $2, $3);
