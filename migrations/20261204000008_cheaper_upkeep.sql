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
-- monotonic function of the count (sender_band below: its number of decimal digits), which
-- changes only when the count crosses a power of ten. An update that leaves the band alone is
-- HOT, and on a skewed mix nearly all are: the senders that write most already have many
-- messages. The top-N reads the N-th entry of (band DESC, from_msisdn), then sorts only the
-- senders in that band or above (ingest-gateway/src/read/stats.sql). Every sender above a band
-- has more messages than every sender in it, so the answer is exact. The price is on that read:
-- it sorts every sender of the band the N-th busiest is in, which is a handful on a skewed mix
-- but all of them when every sender has about as many messages (one band for all).
--
-- Fillfactor 50 on the tables the upkeep updates leaves room on each page for new row versions,
-- so updates stay on their page; pages written before this migration get the room as their rows
-- move.
--
-- Building the index scans sender_stats once, which is small beside `messages`.

-- The band of a count: its number of decimal digits (counts 10^(b-1) to 10^b - 1 are band b),
-- 0 for a count of 0. Immutable: the index and every writer rely on one definition.
CREATE OR REPLACE FUNCTION sender_band(n bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN n > 0 THEN length(n::text) ELSE 0 END
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
