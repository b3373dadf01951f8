-- Whether a message found in the stream is already stored (max_deliveries.rs): then it is only
-- deleted from the stream, as its ack would have done, and is no dead letter. A NATS restart can
-- leave the stream holding messages whose acks the consumer had already counted.
--
-- `message_ids` holds every stored id (the exactly-once key): one primary-key probe, where
-- `messages`, partitioned by ts, has no index that starts with message_id.
--
--   $1 text  message_id
SELECT EXISTS (SELECT 1 FROM message_ids WHERE message_id = $1) AS "stored!";
