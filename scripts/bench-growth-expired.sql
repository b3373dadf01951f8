-- An expired month for the retention measurement of scripts/bench-growth.sh: rows older than the
-- seeded year, in a partition of their own (created here when the worker has not), also in
-- `message_ids`. Their aggregates are added afterwards by `ingest-bench count-in`, as the worker
-- would have added them. psql variables:
--
--   rows  messages to load
--   from  unix seconds, the first day of the month (UTC)
--   to    unix seconds, the first day of the next month
--
-- Same senders, recipients and text lengths as bench-growth-seed.sql.
\set ON_ERROR_STOP on
SELECT set_config('growth.from', :'from', false), set_config('growth.to', :'to', false);

DO $$
DECLARE
    m timestamptz := to_timestamp(current_setting('growth.from')::bigint);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'messages'::regclass) THEN
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
                       'messages_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMMDD'), m,
                       to_timestamp(current_setting('growth.to')::bigint));
    END IF;
END
$$;

INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq)
SELECT 'wamid.expired.' || md5(i::text),
       '+91' || lpad((i % 10000)::text, 7, '0'),
       '+1415' || lpad(((i * 7) % 1000)::text, 6, '0'),
       x.t,
       to_char(x.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       'expired message #' || i,
       i
FROM generate_series(0, :rows - 1) AS i
CROSS JOIN LATERAL (SELECT date_trunc('second', to_timestamp(:from)
                           + ((i::bigint * 7919) % :rows) * ((to_timestamp(:to) - to_timestamp(:from)) / :rows)) AS t) AS x;

DO $$
BEGIN
    IF to_regclass('message_ids') IS NOT NULL THEN
        INSERT INTO message_ids (message_id, ts)
        SELECT message_id, ts FROM messages
        WHERE ts >= to_timestamp(current_setting('growth.from')::bigint)
          AND ts < to_timestamp(current_setting('growth.to')::bigint);
    END IF;
END
$$;
