-- `GET /stats/timeseries` without a sender or a recipient: from the read model's buckets.
--
--   $1  the bucket: 'hour' or 'day'
--   $2 since, $3 until                    the range; NULL when not given
--   $4  how many buckets at most (one past the answer's cap)
--   $5 $6                                 since rounded up / until rounded down to the hour
--   $7 $8, $9 $10, $11 $12                bucket ranges [lo, hi): hours before the first whole
--                                         day, whole days, hours after the last
--                                         (TimeBuckets::for_unit; per hour, all in $7 $8)
--
-- The same split as the total of a time range in /messages (page_with_aggregate_total.sql): whole
-- hours and days from the aggregates, and only the rows of the partial hours at the edges,
-- [since, $5) and [$6, until), counted through the ts index, so a bucket cut by `since` or
-- `until` counts only the rows inside the range. Every part lies inside one bucket of $1, so
-- rounding each part's start down to $1 and adding up is exact. A bucket whose count fell to 0
-- (retention) is left out, as one that never had a row.
SELECT date_trunc($1, p.start, 'UTC') AS "start!", sum(p.count)::bigint AS "count!"
FROM (
    SELECT h.hour AS start, h.count FROM message_hours h
    WHERE h.hour >= coalesce($7::timestamptz, '-infinity')
      AND h.hour < coalesce($8::timestamptz, 'infinity')
    UNION ALL
    SELECT h.hour, h.count FROM message_hours h
    WHERE h.hour >= coalesce($11::timestamptz, '-infinity')
      AND h.hour < coalesce($12::timestamptz, 'infinity')
    UNION ALL
    SELECT d.day, d.count FROM message_days d
    WHERE d.day >= coalesce($9::timestamptz, '-infinity')
      AND d.day < coalesce($10::timestamptz, 'infinity')
    UNION ALL
    SELECT min(m.ts), count(*) FROM messages m
    WHERE $2::timestamptz IS NOT NULL
      AND m.ts >= $2 AND m.ts < least($3::timestamptz, $5::timestamptz)
    HAVING count(*) > 0
    UNION ALL
    SELECT min(m.ts), count(*) FROM messages m
    WHERE $3::timestamptz IS NOT NULL AND $6::timestamptz >= coalesce($5::timestamptz, '-infinity')
      AND m.ts >= greatest($2::timestamptz, $6::timestamptz) AND m.ts < $3
    HAVING count(*) > 0
) p
GROUP BY 1
HAVING sum(p.count) > 0
ORDER BY 1
LIMIT $4
