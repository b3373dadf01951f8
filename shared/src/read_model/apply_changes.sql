-- Applies messages that were just inserted or deleted to the read API's aggregates, so that each
-- stays equal to a count over `messages` (read_model/mod.rs states the invariant).
--
--   $1 text[]         from_msisdn of each changed message
--   $2 text[]         to_msisdn of each changed message (same order and length as $1)
--   $3 timestamptz[]  ts of each changed message (same order and length as $1)
--   $4 int            1 when the messages were inserted, -1 when they were deleted
--
-- Returns one row, `messages`: how many changed messages were applied.
--
-- It runs in the transaction of the INSERT or DELETE, with exactly the rows that statement
-- RETURNED, so the aggregates move with the rows or not at all, and a message that was already
-- stored (or already gone) is never counted.
--
-- Lock order, the same for every caller so that concurrent batches and retention never deadlock:
-- senders sorted (the upsert groups, so it reads every changed row first); recipients sorted,
-- gated on the senders having finished; hour buckets sorted, gated on the recipients; day buckets
-- sorted, gated on the hours; the single totals row last, by `totals`, which Postgres runs after
-- the main query has read `counts` (and so every other CTE) to completion. The `WHERE (SELECT
-- count(*) FROM <previous>) >= 0` conditions are always true; they are there to make each upsert
-- wait for the previous one.
--
-- A sender or recipient whose count reaches 0 keeps its row at 0. It enters `senders_count` /
-- `recipients_count` when its count becomes exactly what this statement added (it had no row, or
-- 0), and leaves them when its count becomes 0.
WITH changed AS (
    SELECT *
    FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS c(from_msisdn, to_msisdn, ts)
),
senders AS (
    INSERT INTO sender_stats AS s (from_msisdn, count)
    SELECT from_msisdn, $4::int * count(*) FROM changed
    GROUP BY from_msisdn ORDER BY from_msisdn
    ON CONFLICT (from_msisdn) DO UPDATE SET count = s.count + EXCLUDED.count
    RETURNING s.from_msisdn, s.count
),
recipients AS (
    INSERT INTO recipient_stats AS r (to_msisdn, count)
    SELECT to_msisdn, $4::int * count(*) FROM changed
    WHERE (SELECT count(*) FROM senders) >= 0
    GROUP BY to_msisdn ORDER BY to_msisdn
    ON CONFLICT (to_msisdn) DO UPDATE SET count = r.count + EXCLUDED.count
    RETURNING r.to_msisdn, r.count
),
hours AS (
    INSERT INTO message_hours AS b (hour, count)
    SELECT date_trunc('hour', ts, 'UTC'), $4::int * count(*) FROM changed
    WHERE (SELECT count(*) FROM recipients) >= 0
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET count = b.count + EXCLUDED.count
    RETURNING 1
),
days AS (
    INSERT INTO message_days AS b (day, count)
    SELECT date_trunc('day', ts, 'UTC'), $4::int * count(*) FROM changed
    WHERE (SELECT count(*) FROM hours) >= 0
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET count = b.count + EXCLUDED.count
    RETURNING 1
),
-- `senders` / `recipients`: how many numbers entered the distinct count minus how many left it.
counts AS (
    SELECT (SELECT count(*) FROM changed) AS messages,
           (SELECT count(*) FILTER (WHERE g.n > 0 AND s.count = g.n)
                 - count(*) FILTER (WHERE g.n < 0 AND s.count = 0)
            FROM senders AS s
            JOIN (SELECT from_msisdn, $4::int * count(*) AS n FROM changed GROUP BY 1) AS g
            USING (from_msisdn)) AS senders,
           (SELECT count(*) FILTER (WHERE g.n > 0 AND r.count = g.n)
                 - count(*) FILTER (WHERE g.n < 0 AND r.count = 0)
            FROM recipients AS r
            JOIN (SELECT to_msisdn, $4::int * count(*) AS n FROM changed GROUP BY 1) AS g
            USING (to_msisdn)) AS recipients,
           (SELECT count(*) FROM days) AS days
),
totals AS (
    UPDATE message_totals AS t SET
        total_messages   = t.total_messages + $4::int * c.messages,
        senders_count    = t.senders_count + c.senders,
        recipients_count = t.recipients_count + c.recipients
    FROM counts AS c
    WHERE t.id AND c.messages > 0
)
SELECT messages FROM counts;
