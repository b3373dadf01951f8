-- After a pass with the upkeep: how many aggregate rows differ from a direct count over
-- `messages` (0 when the upkeep kept the invariant of shared/src/read_model/mod.rs). No
-- parameters; returns one row, `mismatches`.
SELECT (SELECT count(*) FROM (
            SELECT from_msisdn, count(*) AS n FROM messages GROUP BY 1) m
        FULL JOIN (SELECT * FROM sender_stats WHERE count <> 0) s USING (from_msisdn)
        WHERE m.n IS DISTINCT FROM s.count)
     + (SELECT count(*) FROM (
            SELECT to_msisdn, count(*) AS n FROM messages GROUP BY 1) m
        FULL JOIN (SELECT * FROM recipient_stats WHERE count <> 0) r USING (to_msisdn)
        WHERE m.n IS DISTINCT FROM r.count)
     + (SELECT count(*) FROM (
            SELECT date_trunc('hour', ts, 'UTC') AS hour, count(*) AS n FROM messages GROUP BY 1) m
        FULL JOIN (SELECT * FROM message_hours WHERE count <> 0) h USING (hour)
        WHERE m.n IS DISTINCT FROM h.count)
     + (SELECT count(*) FROM (
            SELECT date_trunc('day', ts, 'UTC') AS day, count(*) AS n FROM messages GROUP BY 1) m
        FULL JOIN (SELECT * FROM message_days WHERE count <> 0) d USING (day)
        WHERE m.n IS DISTINCT FROM d.count)
     + (SELECT count(*) FROM message_totals t
        WHERE t.total_messages <> (SELECT count(*) FROM messages)
           OR t.senders_count <> (SELECT count(DISTINCT from_msisdn) FROM messages)
           OR t.recipients_count <> (SELECT count(DISTINCT to_msisdn) FROM messages))
       AS "mismatches!"
