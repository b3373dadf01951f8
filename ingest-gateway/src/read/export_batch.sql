-- One round trip of a streamed `GET /messages?format=ndjson|csv`: the next matches after the
-- last row sent, in (ts, message_id) order (keyset, so each round trip costs the same however
-- deep into the export it is).
--
--   $1 from, $2 to, $3 since, $4 until      the filters; NULL when not given
--   $5                                      the ILIKE pattern (escaped, wrapped in %); NULL: none
--   $6 $7                                   the last row sent (ts, message_id); NULL at first
--   $8                                      whether to read `raw`
--   $9                                      rows per round trip
--   $10                                     source; NULL when not given
--
-- The filters are messages_matching's. The read pool plans every execution
-- with the actual values, so NULL filters fold away, and `m.ts >= $6` (implied by the row
-- comparison, which the planner cannot prune partitions by) leaves out the partitions already
-- sent. The scan is the (ts, message_id) index, or a sender's or recipient's, in order, and
-- stops after $9 matches.
SELECT m.message_id AS "message_id!", m.from_msisdn AS "from_msisdn!", m.to_msisdn AS "to_msisdn!",
       m.ts AS "ts!", m.ts_raw AS "ts_raw!", m.text, m.msg_type, m.source,
       CASE WHEN $8::boolean THEN m.raw END AS "raw: sqlx::types::Json<serde_json::Value>"
FROM messages_matching($1, $2, $3, $4, $5, $10) m
WHERE ($6::timestamptz IS NULL OR m.ts >= $6)
  AND ($6::timestamptz IS NULL OR (m.ts, m.message_id) > ($6, $7::text))
ORDER BY m.ts, m.message_id
LIMIT $9
