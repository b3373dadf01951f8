-- Applies messages that were just inserted or deleted to the read API's aggregates, so that each
-- stays equal to a count over `messages` (read_model/mod.rs states the invariant).
--
--   $1 text[]         the distinct from_msisdn of the changed messages
--   $2 bigint[]       how much each one's count moves (same order and length as $1)
--   $3 text[] $4 bigint[]               the same for to_msisdn
--   $5 timestamptz[] $6 bigint[]        the same for the UTC hours of ts
--   $7 timestamptz[] $8 bigint[]        the same for the UTC days of ts
--   $9 bigint         how much the number of messages moves
--
-- Every move is positive when the messages were inserted, negative when they were deleted.
-- No rows returned.
--
-- It runs in the transaction of the INSERT or DELETE, with exactly the rows that statement
-- RETURNED, so the aggregates move with the rows or not at all, and a message that was already
-- stored (or already gone) is never counted.
--
-- Lock order, the same for every caller so that concurrent batches and retention never deadlock:
-- senders sorted; recipients sorted, gated on the senders having finished; hour buckets sorted,
-- gated on the recipients; day buckets sorted, gated on the hours; the single totals row last,
-- by `totals`, which Postgres runs after the main query has read `counts` (and so every other
-- CTE) to completion. The `WHERE (SELECT count(*) FROM <previous>) >= 0` conditions are always
-- true; they are there to make each upsert wait for the previous one.
--
-- A sender or recipient whose count reaches 0 keeps its row at 0. It enters `senders_count` /
-- `recipients_count` when its count becomes exactly what this statement added (it had no row, or
-- 0), and leaves them when its count becomes 0.
WITH senders AS (
    INSERT INTO sender_stats AS s (from_msisdn, count, band)
    SELECT k, n, sender_band(n) FROM UNNEST($1::text[], $2::bigint[]) AS g(k, n) ORDER BY 1
    ON CONFLICT (from_msisdn) DO UPDATE SET
        count = s.count + EXCLUDED.count,
        band = sender_band(s.count + EXCLUDED.count)
    RETURNING s.from_msisdn, s.count
),
recipients AS (
    INSERT INTO recipient_stats AS r (to_msisdn, count)
    SELECT * FROM UNNEST($3::text[], $4::bigint[])
    WHERE (SELECT count(*) FROM senders) >= 0
    ORDER BY 1
    ON CONFLICT (to_msisdn) DO UPDATE SET count = r.count + EXCLUDED.count
    RETURNING r.to_msisdn, r.count
),
hours AS (
    INSERT INTO message_hours AS b (hour, count)
    SELECT * FROM UNNEST($5::timestamptz[], $6::bigint[])
    WHERE (SELECT count(*) FROM recipients) >= 0
    ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET count = b.count + EXCLUDED.count
    RETURNING 1
),
days AS (
    INSERT INTO message_days AS b (day, count)
    SELECT * FROM UNNEST($7::timestamptz[], $8::bigint[])
    WHERE (SELECT count(*) FROM hours) >= 0
    ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET count = b.count + EXCLUDED.count
    RETURNING 1
),
-- `senders` / `recipients`: how many numbers entered the distinct count minus how many left it.
counts AS (
    SELECT (SELECT count(*) FILTER (WHERE g.n > 0 AND s.count = g.n)
                 - count(*) FILTER (WHERE g.n < 0 AND s.count = 0)
            FROM senders AS s
            JOIN UNNEST($1::text[], $2::bigint[]) AS g(from_msisdn, n) USING (from_msisdn))
               AS senders,
           (SELECT count(*) FILTER (WHERE g.n > 0 AND r.count = g.n)
                 - count(*) FILTER (WHERE g.n < 0 AND r.count = 0)
            FROM recipients AS r
            JOIN UNNEST($3::text[], $4::bigint[]) AS g(to_msisdn, n) USING (to_msisdn))
               AS recipients,
           (SELECT count(*) FROM days) AS days
),
totals AS (
    UPDATE message_totals AS t SET
        total_messages   = t.total_messages + $9::bigint,
        senders_count    = t.senders_count + c.senders,
        recipients_count = t.recipients_count + c.recipients
    FROM counts AS c
    WHERE t.id
)
SELECT days FROM counts
