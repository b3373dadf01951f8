-- The read API (GET /messages, GET /stats).
--
-- Building these indexes on a large existing table blocks writes for the time it takes
-- (migrations run in a transaction, so CONCURRENTLY is not possible here); on a big production
-- table create them by hand with CREATE INDEX CONCURRENTLY first, and this migration skips them.

-- q= is a case-insensitive substring search: ILIKE '%q%' is served by a trigram GIN index for
-- patterns of 3+ characters instead of scanning the table.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops);

-- to= keeps the same order as from= and the unfiltered list.
CREATE INDEX IF NOT EXISTS messages_to_ts_id_idx ON messages (to_msisdn, ts, message_id);

-- Aggregates kept by the worker in the same statement as its batch insert, counting only the rows
-- that statement really inserted (ON CONFLICT ... RETURNING), so they stay exact with duplicates
-- and several workers, and /stats never counts the messages table.
CREATE TABLE IF NOT EXISTS message_totals (
    id               boolean PRIMARY KEY DEFAULT true CHECK (id),
    total_messages   bigint  NOT NULL DEFAULT 0,
    senders_count    bigint  NOT NULL DEFAULT 0,
    recipients_count bigint  NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS sender_stats (
    from_msisdn text   PRIMARY KEY,
    count       bigint NOT NULL
);
-- The top-10 of /stats reads the first ten entries of this index.
CREATE INDEX IF NOT EXISTS sender_stats_top_idx ON sender_stats (count DESC, from_msisdn);

CREATE TABLE IF NOT EXISTS recipient_stats (
    to_msisdn text   PRIMARY KEY,
    count     bigint NOT NULL
);

-- Messages per hour of ts (UTC), so the total of a since/until-only query is a sum over at most a
-- few thousand buckets plus an index count of the two partial hours at its edges, instead of a
-- count of every matching row.
CREATE TABLE IF NOT EXISTS message_hours (
    hour  timestamptz PRIMARY KEY,
    count bigint      NOT NULL
);

-- Recomputes every aggregate from the messages table. Used once below for rows stored before this
-- migration; also the repair tool should the aggregates ever be suspected (e.g. a worker of an
-- older version wrote rows after this migration ran): SELECT rebuild_message_stats();
CREATE OR REPLACE FUNCTION rebuild_message_stats() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Writers wait meanwhile, so no batch is counted twice or missed.
    LOCK TABLE messages IN SHARE MODE;
    LOCK TABLE message_totals, sender_stats, recipient_stats, message_hours IN EXCLUSIVE MODE;
    DELETE FROM sender_stats;
    DELETE FROM recipient_stats;
    DELETE FROM message_hours;
    INSERT INTO sender_stats (from_msisdn, count)
        SELECT from_msisdn, count(*) FROM messages GROUP BY from_msisdn;
    INSERT INTO recipient_stats (to_msisdn, count)
        SELECT to_msisdn, count(*) FROM messages GROUP BY to_msisdn;
    INSERT INTO message_hours (hour, count)
        SELECT date_trunc('hour', ts, 'UTC'), count(*) FROM messages GROUP BY 1;
    INSERT INTO message_totals (id) VALUES (true) ON CONFLICT (id) DO NOTHING;
    UPDATE message_totals SET
        total_messages   = (SELECT count(*) FROM messages),
        senders_count    = (SELECT count(*) FROM sender_stats),
        recipients_count = (SELECT count(*) FROM recipient_stats);
END
$$;

SELECT rebuild_message_stats();
