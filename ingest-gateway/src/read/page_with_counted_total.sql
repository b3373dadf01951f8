-- A page of `GET /messages` and its total, when the total has to be counted (a text search, or
-- more than one kind of filter).
--
--   $1 from, $2 to, $3 since, $4 until      the filters; NULL when not given
--   $5                                      the ILIKE pattern (escaped, wrapped in %); NULL: none
--   $6 $7                                   the cursor (ts, message_id); NULL on a first page
--   $8 offset, $9 limit                     limit is one more than asked: a row past the page
--                                           says there is a next one
--   $10                                     the count bound plus one; NULL counts every match
--   $11                                     source; NULL when not given
--
-- The page and its total in one statement, so both see the same snapshot while workers insert;
-- the filters are messages_matching's (its migration says how NULL ones fold away).
--
-- The matches are counted through whichever index serves the filters, but only up to the
-- bound. Under the bound the page is taken from the rows just counted (for a search that halves
-- the heap visits). At the bound the count stopped early, the caller estimates the total
-- (estimate_matches.sql), and the page is found by a scan of its own in (ts, message_id) order,
-- which stops after `limit` rows: neither costs as much as the matches. Only one branch of
-- `keys` runs: the other's condition is false before it starts. The page's rows are read back
-- by (ts, message_id), the partition key first, so each lookup goes to one partition's index.
--
-- "x?" and "x!" tell the compile-time check what it cannot infer: the message columns are NULL
-- on the one row of an empty page (the LEFT JOIN), the total never is.
WITH matched AS MATERIALIZED (
    SELECT m.ts, m.message_id FROM messages_matching($1, $2, $3, $4, $5, $11) m
    LIMIT $10
),
total AS (SELECT count(*) AS n FROM matched),
keys AS (
    (SELECT k.ts, k.message_id FROM matched k
     WHERE ($10::bigint IS NULL OR (SELECT n FROM total) < $10)
       AND ($6::timestamptz IS NULL OR (k.ts, k.message_id) > ($6, $7::text))
     ORDER BY k.ts, k.message_id
     OFFSET $8 LIMIT $9)
    UNION ALL
    (SELECT m.ts, m.message_id FROM messages_matching($1, $2, $3, $4, $5, $11) m
     WHERE (SELECT n FROM total) >= $10
       AND ($6::timestamptz IS NULL OR (m.ts, m.message_id) > ($6, $7::text))
     ORDER BY m.ts, m.message_id
     OFFSET $8 LIMIT $9)
)
SELECT total.n AS "total!", p.message_id AS "message_id?", p.from_msisdn AS "from_msisdn?",
       p.to_msisdn AS "to_msisdn?", p.ts AS "ts?", p.ts_raw AS "ts_raw?", p.text, p.msg_type, p.source
FROM total LEFT JOIN (keys k JOIN messages p ON p.ts = k.ts AND p.message_id = k.message_id) ON true
ORDER BY p.ts, p.message_id
