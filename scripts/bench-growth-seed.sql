-- Seeds a growth database (scripts/bench-growth.sh) on whichever schema the binaries migrated it
-- to: today's unpartitioned `messages`, or `messages` partitioned by month of ts with the narrow
-- `message_ids` table. psql variables:
--
--   rows        messages to load
--   senders     distinct senders (+91 and 7 digits, as scripts/bench-read.lua asks for)
--   recipients  distinct recipients
--   t0          unix seconds, a midnight UTC: the rows' ts spread over the 365 days before it
--               (scrambled: the heap order is not the ts order, as with late arrivals); a
--               drained backlog's ts starts at t0, so it is never mixed with seeded rows
--
-- Texts: a pool of 4,096 texts with the lengths of the chat mix (ingest-bench --text chat: 5%
-- absent, 70% 5-160 characters, 22% 160-1,000, 3% 1,000-4,000) made of the same words, each row
-- one of them plus its number; 1% of the rows are "please refund order #n" instead, the rare word
-- the read benchmark searches for. Ids are 'wamid.' and an md5: spread over the whole index as
-- real ids are.
--
-- Loading with the indexes of `messages` (and `message_ids`) in place would cost hours at 100M
-- rows (every row a random insert into each index); they are dropped, kept as their definitions,
-- and built again after the load, primary keys too.
\set ON_ERROR_STOP on
SET maintenance_work_mem = '1GB';
SELECT set_config('growth.t0', :'t0', false);

-- Monthly partitions for the seeded year when `messages` is partitioned, named as the worker
-- names them, so no row lands in the default partition.
DO $$
DECLARE
    t0 timestamptz := to_timestamp(current_setting('growth.t0')::bigint);
    m timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'messages'::regclass) THEN
        m := date_trunc('month', t0 - interval '365 days', 'UTC');
        WHILE m < t0 + interval '1 month' LOOP
            EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
                           'messages_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMMDD'),
                           m, (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
            m := (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
        END LOOP;
    END IF;
END
$$;

CREATE TEMP TABLE growth_constraints AS
SELECT conrelid::regclass::text AS tbl, conname AS name, pg_get_constraintdef(oid) AS def
FROM pg_constraint
WHERE conrelid IN (to_regclass('messages'), to_regclass('message_ids')) AND contype IN ('p', 'u');

CREATE TEMP TABLE growth_indexes AS
SELECT c.relname AS name, replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ') AS def
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid IN (to_regclass('messages'), to_regclass('message_ids'))
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid);

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT name FROM growth_indexes LOOP
        EXECUTE format('DROP INDEX %I', r.name);
    END LOOP;
    FOR r IN SELECT tbl, name FROM growth_constraints LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.name);
    END LOOP;
END
$$;

CREATE TEMP TABLE growth_texts AS
WITH words AS (
    SELECT ARRAY['hi', 'hello', 'order', 'shipped', 'thanks', 'payment', 'received', 'please',
                 'call', 'me', 'tomorrow', 'at', 'the', 'office', 'your', 'OTP', 'is', 'delivery',
                 'confirmed', 'ok', 'see', 'you', 'soon', 'namaste', 'café', 'price', '₹499', '👍',
                 '🙏', '"quoted"', E'line\nbreak'] AS w
),
lengths AS (
    SELECT k, CASE WHEN k % 100 < 5 THEN NULL
                   WHEN k % 100 < 75 THEN 5 + (k * 37) % 155
                   WHEN k % 100 < 97 THEN 160 + (k * 53) % 840
                   ELSE 1000 + (k * 71) % 3000 END AS len
    FROM generate_series(0, 4095) AS k
)
SELECT l.k, left(string_agg(words.w[1 + (hashint4(l.k * 4099 + g) & 2147483647) % 31], ' ' ORDER BY g), l.len) AS text
FROM lengths l CROSS JOIN words CROSS JOIN LATERAL generate_series(1, coalesce(l.len, 0) / 2 + 1) AS g
WHERE l.len IS NOT NULL
GROUP BY l.k, l.len
UNION ALL
SELECT k, NULL FROM lengths WHERE len IS NULL;
ANALYZE growth_texts;

INSERT INTO messages (message_id, from_msisdn, to_msisdn, ts, ts_raw, text, stream_seq)
SELECT 'wamid.' || md5(i::text),
       '+91' || lpad((i % :senders)::text, 7, '0'),
       '+1415' || lpad(((i * 7) % :recipients)::text, 6, '0'),
       x.t,
       to_char(x.t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       CASE WHEN i % 100 = 42 THEN 'please refund order #' || i ELSE p.text || ' #' || i END,
       i
FROM generate_series(0, :rows - 1) AS i
CROSS JOIN LATERAL (SELECT date_trunc('second', to_timestamp(:t0 - 31536000)
                           + ((i::bigint * 7919) % :rows) * (interval '31536000 seconds' / :rows)) AS t) AS x
JOIN growth_texts p ON p.k = (i * 2654435761) % 4096;

DO $$
BEGIN
    IF to_regclass('message_ids') IS NOT NULL THEN
        INSERT INTO message_ids (message_id, ts) SELECT message_id, ts FROM messages;
    END IF;
END
$$;

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT tbl, name, def FROM growth_constraints LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.tbl, r.name, r.def);
    END LOOP;
    FOR r IN SELECT def FROM growth_indexes LOOP
        EXECUTE r.def;
    END LOOP;
END
$$;

SELECT rebuild_message_stats();
