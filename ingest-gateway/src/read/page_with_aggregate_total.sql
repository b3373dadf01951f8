-- A page of `GET /messages` and its total, when the aggregates of the read model count that total
-- (no filter, or only a sender, only a recipient, or only a time range; never a source:
-- `Params::total_from_aggregates`).
--
--   $1 from, $2 to, $3 since, $4 until      the filters; NULL when not given
--   $5 $6                                   the cursor (ts, message_id); NULL on a first page
--   $7 offset, $8 limit                     limit is one more than asked: a row past the page
--                                           says there is a next one
--   $9 $10                                  since rounded up / until rounded down to the hour
--   $11 $12, $13 $14, $15 $16               bucket ranges [lo, hi): hours before the first whole
--                                           day, whole days, hours after the last (TimeBuckets)
--
-- The page and its total in one statement, so both see the same snapshot while workers insert.
-- The read pool plans every execution with the actual values (plan_cache_mode =
-- force_custom_plan): a filter whose parameter is NULL folds away, and so do the CASE arms
-- that do not apply, so each combination gets its own plan and index.
--
-- A time range adds up whole days from message_days and whole hours from message_hours; only
-- the rows of the partial hours at its edges, [since, $9) and [$10, until), are counted, through
-- the ts index. least/greatest ignore NULLs, so an open end needs no special case.
--
-- The page is found on the index alone (the rows an OFFSET skips cost an index entry each, not
-- a heap fetch); then only its own rows are read from the table, by (ts, message_id): the
-- partition key first, so each lookup goes to one partition's index.
--
-- "x?" and "x!" tell the compile-time check what it cannot infer: the message columns are NULL
-- on the one row of an empty page (the LEFT JOIN), the total never is.
WITH total AS (
    SELECT CASE
        WHEN $1::text IS NOT NULL THEN
            coalesce((SELECT count FROM sender_stats WHERE from_msisdn = $1), 0)
        WHEN $2::text IS NOT NULL THEN
            coalesce((SELECT count FROM recipient_stats WHERE to_msisdn = $2), 0)
        WHEN $3::timestamptz IS NOT NULL OR $4::timestamptz IS NOT NULL THEN
            (coalesce((SELECT sum(h.count) FROM message_hours h
                       WHERE h.hour >= coalesce($11::timestamptz, '-infinity')
                         AND h.hour < coalesce($12::timestamptz, 'infinity')), 0)
           + coalesce((SELECT sum(d.count) FROM message_days d
                       WHERE d.day >= coalesce($13::timestamptz, '-infinity')
                         AND d.day < coalesce($14::timestamptz, 'infinity')), 0)
           + coalesce((SELECT sum(h.count) FROM message_hours h
                       WHERE h.hour >= coalesce($15::timestamptz, '-infinity')
                         AND h.hour < coalesce($16::timestamptz, 'infinity')), 0)
           + (SELECT count(*) FROM messages m
              WHERE $3::timestamptz IS NOT NULL AND m.ts >= $3 AND m.ts < least($4, $9))
           + (SELECT count(*) FROM messages m
              WHERE $4::timestamptz IS NOT NULL AND $10 >= coalesce($9, '-infinity')
                AND m.ts >= greatest($3, $10) AND m.ts < $4)
            )::bigint
        ELSE
            coalesce((SELECT total_messages FROM message_totals), 0)
    END AS n
),
keys AS (
    SELECT m.ts, m.message_id FROM messages_matching($1, $2, $3, $4, NULL) m
    WHERE ($5::timestamptz IS NULL OR (m.ts, m.message_id) > ($5, $6::text))
    ORDER BY m.ts, m.message_id
    OFFSET $7 LIMIT $8
)
SELECT total.n AS "total!", p.message_id AS "message_id?", p.from_msisdn AS "from_msisdn?",
       p.to_msisdn AS "to_msisdn?", p.ts AS "ts?", p.ts_raw AS "ts_raw?", p.text, p.msg_type, p.source
FROM total LEFT JOIN (keys k JOIN messages p ON p.ts = k.ts AND p.message_id = k.message_id) ON true
ORDER BY p.ts, p.message_id
