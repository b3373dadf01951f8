-- How many dead letters match the filters (the `remaining` of a bulk redrive); $1..$3 as in
-- page.sql.
SELECT count(*) AS "count!"
FROM dead_letters d
WHERE dead_letter_matches(d, $1, $2, $3);
