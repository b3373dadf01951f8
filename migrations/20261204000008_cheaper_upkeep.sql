-- The aggregate upkeep at a fraction of its cost: every update of a count becomes a HOT update
-- (a new row version on the same page, no index entry written) instead of a new entry in every
-- index of the table.
--
-- Why: each batch moves the count of every distinct sender and recipient it holds. An update is
-- HOT only when no indexed column changes and the page has room. `sender_stats_top_idx` indexed
-- `count` itself, so every sender update wrote a new entry into both of its indexes, and the
-- tables at fillfactor 100 had no room on the page anyway: the upkeep cost Postgres a large
-- part of what the insert of the row itself costs (BENCHMARKS.md, "Aggregate upkeep").
--
-- What replaces the index on `count` for the busiest senders of /stats: `band`, a coarse,
-- monotonic function of the count (sender_band below), which changes far less often than the
-- count. An update that leaves the band alone is HOT. The top-N reads the N-th entry of
-- (band DESC, from_msisdn), then sorts only the senders in that band or above
-- (ingest-gateway/src/read/stats.sql). Every sender above a band has more messages than every
-- sender in it, so the answer is exact.
--
-- The width of the bands is the trade-off between the two sides: a wide band changes rarely
-- (cheap upkeep) but holds many senders for /stats to sort when counts are alike. Below 100
-- messages a band is a number of digits (1-9, 10-99): the long tail of rarely-writing senders,
-- whose counts are small, rarely change band. From 100 on, a band is the number of digits and
-- the first two digits, at most a tenth of its counts wide: a sender's band moves once in every
-- 1 to 10% of growth, and /stats sorts only the senders within that of the N-th busiest.
--
-- Fillfactor 50 on the tables the upkeep updates leaves room on each page for new row versions,
-- so updates stay on their page; pages written before this migration get the room as their rows
-- move.
--
-- Building the index scans sender_stats once, which is small beside `messages`.

-- The band of a count: 0 for 0; 1 for 1-9 and 2 for 10-99; from 100 on, 100 times its number
-- of digits plus its first two digits (100-109 is 310, 990-999 is 399, 1000-1099 is 410).
-- Immutable: the index and every writer rely on one definition.
CREATE OR REPLACE FUNCTION sender_band(n bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN n <= 0 THEN 0
        WHEN n < 100 THEN length(n::text)
        ELSE 100 * length(n::text) + left(n::text, 2)::integer
    END
$$;

ALTER TABLE sender_stats ADD COLUMN IF NOT EXISTS band integer;
UPDATE sender_stats SET band = sender_band(count);
ALTER TABLE sender_stats ALTER COLUMN band SET NOT NULL;

DROP INDEX IF EXISTS sender_stats_top_idx;
-- The top-N of /stats reads its first entries (band > 0: a sender at 0 is no longer counted).
CREATE INDEX IF NOT EXISTS sender_stats_band_idx ON sender_stats (band DESC, from_msisdn);

ALTER TABLE sender_stats SET (fillfactor = 50);
ALTER TABLE recipient_stats SET (fillfactor = 50);
ALTER TABLE message_hours SET (fillfactor = 50);
ALTER TABLE message_days SET (fillfactor = 50);
ALTER TABLE message_totals SET (fillfactor = 50);

-- The same repair tool as before, now also setting the bands.
CREATE OR REPLACE FUNCTION rebuild_message_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait meanwhile, so no batch is counted twice or missed.
    LOCK TABLE messages IN SHARE MODE;
    LOCK TABLE message_totals, sender_stats, recipient_stats, message_hours, message_days
        IN EXCLUSIVE MODE;
    DELETE FROM sender_stats;
    DELETE FROM recipient_stats;
    DELETE FROM message_hours;
    DELETE FROM message_days;
    INSERT INTO sender_stats (from_msisdn, count, band)
        SELECT from_msisdn, count(*), sender_band(count(*)) FROM messages GROUP BY from_msisdn;
    INSERT INTO recipient_stats (to_msisdn, count)
        SELECT to_msisdn, count(*) FROM messages GROUP BY to_msisdn;
    INSERT INTO message_hours (hour, count)
        SELECT date_trunc('hour', ts, 'UTC'), count(*) FROM messages GROUP BY 1;
    INSERT INTO message_days (day, count)
        SELECT date_trunc('day', hour, 'UTC'), sum(count) FROM message_hours GROUP BY 1;
    INSERT INTO message_totals (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
    UPDATE message_totals SET
        total_messages   = (SELECT count(*) FROM messages),
        senders_count    = (SELECT count(*) FROM sender_stats),
        recipients_count = (SELECT count(*) FROM recipient_stats);
END
$$;
