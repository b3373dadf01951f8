-- One dead letter by id (the same columns as page.sql).
SELECT id, kind, dedup_key, reason, request_id, subject, stream_seq, payload,
       first_seen, last_seen, times, source
FROM dead_letters
WHERE id = $1;
