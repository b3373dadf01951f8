-- `GET /stats`, from the read model's aggregates, so the cost does not grow with the table.
--
--   $1  how many of the busiest senders to list
--
-- One statement, so every number comes from the same snapshot. The first and last message are
-- one index probe each on (ts, message_id); the busiest senders are the first entries of
-- sender_stats_top_idx (a sender whose messages retention removed stays, at count 0).
SELECT t.total_messages,
       t.senders_count,
       t.recipients_count,
       (SELECT ts_raw FROM messages ORDER BY ts, message_id LIMIT 1) AS first_message_ts,
       (SELECT ts_raw FROM messages ORDER BY ts DESC, message_id DESC LIMIT 1) AS last_message_ts,
       ARRAY(SELECT from_msisdn FROM sender_stats WHERE count > 0
             ORDER BY count DESC, from_msisdn LIMIT $1) AS top_senders,
       ARRAY(SELECT count FROM sender_stats WHERE count > 0
             ORDER BY count DESC, from_msisdn LIMIT $1) AS top_sender_counts
FROM message_totals t
