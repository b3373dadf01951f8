-- `GET /stats`, from the read model's aggregates, so the cost does not grow with the table.
--
--   $1  how many of the busiest senders to list
--
-- One statement, so every number comes from the same snapshot. The first and last message are
-- one index probe each on (ts, message_id).
--
-- The busiest senders come from sender_stats_band_idx (band DESC, from_msisdn), not from an index
-- on the count, which would make every update of a count write index entries (the migration
-- 20261204000008_cheaper_upkeep.sql says why). The $1-th entry of that index names the band the
-- last of the busiest $1 is in. Every sender in a higher band has more messages than every sender
-- in that band or below, so the answer is the senders above it (fewer than $1; the LIMIT only
-- tells the planner so, to walk the index) and the busiest of that band, the only rows sorted. A sender whose messages retention removed stays at band
-- and count 0 and is left out.
WITH edge AS (
    SELECT coalesce((SELECT band FROM sender_stats WHERE band > 0
                     ORDER BY band DESC, from_msisdn OFFSET greatest($1::bigint - 1, 0) LIMIT 1), 1)
           AS band
),
top AS (
    (SELECT s.from_msisdn, s.count FROM sender_stats s
     WHERE s.band > (SELECT band FROM edge)
     ORDER BY s.band DESC, s.from_msisdn LIMIT $1)
    UNION ALL
    (SELECT s.from_msisdn, s.count FROM sender_stats s
     WHERE s.band = (SELECT band FROM edge)
     ORDER BY s.count DESC, s.from_msisdn LIMIT $1)
)
SELECT t.total_messages,
       t.senders_count,
       t.recipients_count,
       (SELECT ts_raw FROM messages ORDER BY ts, message_id LIMIT 1) AS first_message_ts,
       (SELECT ts_raw FROM messages ORDER BY ts DESC, message_id DESC LIMIT 1) AS last_message_ts,
       ARRAY(SELECT from_msisdn FROM top ORDER BY count DESC, from_msisdn LIMIT $1) AS "top_senders!",
       ARRAY(SELECT count FROM top ORDER BY count DESC, from_msisdn LIMIT $1) AS "top_sender_counts!"
FROM message_totals t
