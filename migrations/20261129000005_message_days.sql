-- A daily roll-up beside the hourly buckets: the total of a since/until-only query is then a sum
-- over at most ~365 days per year of range plus the partial days' hours (at most 2 x 23) plus the
-- partial hours' rows, instead of up to 8,760 hours per year. Kept by the worker and by retention
-- in the same statement as the hours (ingest-worker/src/aggregates.rs).
CREATE TABLE IF NOT EXISTS message_days (
    day   timestamptz PRIMARY KEY,
    count bigint      NOT NULL
);

-- The same repair tool as before, now also rebuilding the days.
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
    INSERT INTO sender_stats (from_msisdn, count)
        SELECT from_msisdn, count(*) FROM messages GROUP BY from_msisdn;
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

-- Rebuilt, not copied from the hours, under the function's locks. Rows that a worker of the
-- previous version stores after this (it keeps the hours but not the days) need one more
-- SELECT rebuild_message_stats() once every worker runs this version.
SELECT rebuild_message_stats();
