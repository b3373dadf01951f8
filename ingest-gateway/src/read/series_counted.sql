-- `GET /stats/timeseries` with a sender or a recipient: counted from `messages`, since no
-- aggregate is kept per sender and hour.
--
--   $1  the bucket: 'hour' or 'day'
--   $2 from, $3 to, $4 since, $5 until    the filters; NULL when not given ($2 or $3 is given)
--   $6  how many buckets at most (one past the answer's cap)
--
-- The read pool plans every execution with the actual values, so the NULL filters fold away and
-- the scan is a range of the (from_msisdn, ts, message_id) or (to_msisdn, ts, message_id) index,
-- already in ts order: the cost is that sender's (or recipient's) rows in the range.
SELECT date_trunc($1, m.ts, 'UTC') AS start, count(*) AS count
FROM messages m
WHERE ($2::text IS NULL OR m.from_msisdn = $2)
  AND ($3::text IS NULL OR m.to_msisdn = $3)
  AND ($4::timestamptz IS NULL OR m.ts >= $4)
  AND ($5::timestamptz IS NULL OR m.ts < $5)
GROUP BY 1
ORDER BY 1
LIMIT $6
