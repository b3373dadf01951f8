-- `GET /messages/{message_id}`: one message and the payload it came from.
--
--   $1 the message id
--
-- The id's ts comes from message_ids (its primary key) in an init plan, which runs before the
-- scan of messages starts, so the executor prunes every partition but the one holding that ts
-- and the lookup is one probe of that partition's (ts, message_id) index.
SELECT m.message_id, m.from_msisdn, m.to_msisdn, m.ts_raw, m.text, m.msg_type, m.source, m.raw AS "raw: sqlx::types::Json<serde_json::Value>"
FROM messages m
WHERE m.ts = (SELECT i.ts FROM message_ids i WHERE i.message_id = $1)
  AND m.message_id = $1
