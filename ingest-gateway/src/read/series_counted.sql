-- `GET /stats/timeseries` with a sender, a recipient or a source: counted from `messages`, since
-- no aggregate is kept per sender, recipient or source and hour.
--
--   $1  the bucket: 'hour' or 'day'
--   $2 from, $3 to, $4 since, $5 until    the filters; NULL when not given ($2, $3 or $7 is given)
--   $6  how many buckets at most (one past the answer's cap)
--   $7  source; NULL when not given
--
-- The read pool plans every execution with the actual values, so the NULL filters fold away and
-- the scan is a range of the (from_msisdn, ts, message_id), (to_msisdn, ts, message_id) or
-- (source, ts, message_id) index, already in ts order: the cost is that sender's (or recipient's, or
-- source's) rows in the range.
SELECT date_trunc($1, m.ts, 'UTC') AS "start!", count(*) AS "count!"
FROM messages_matching($2, $3, $4, $5, NULL, $7) m
GROUP BY 1
ORDER BY 1
LIMIT $6
