-- A page of dead letters in id order, filtered; also what a bulk redrive reads, chunk by chunk.
--
--   $1 text         reason: an ILIKE pattern (escaped and wrapped in %), NULL for none
--   $2 timestamptz  since: last_seen >= since, NULL for none
--   $3 timestamptz  until: last_seen < until, NULL for none
--   $4 bigint       the cursor: only ids after it, NULL on a first page
--   $5 bigint       the most rows returned (a page asks one more than it shows, to know
--                   whether there is a next)
--
-- The payload comes along: the caller reads the message id from it, and redrives it.
SELECT id, kind, dedup_key, reason, request_id, subject, stream_seq, payload,
       first_seen, last_seen, times, source
FROM dead_letters d
WHERE dead_letter_matches(d, $1, $2, $3)
  AND ($4::bigint IS NULL OR id > $4)
ORDER BY id
LIMIT $5;
