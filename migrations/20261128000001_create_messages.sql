-- Messages as accepted by the gateway. message_id is the idempotency key: the worker inserts with
-- ON CONFLICT (message_id) DO NOTHING, which is the exactly-once guarantee (JetStream's dedup
-- window is only an optimisation in front of it).
CREATE TABLE IF NOT EXISTS messages (
    message_id  text        PRIMARY KEY,
    from_msisdn text        NOT NULL,
    to_msisdn   text        NOT NULL,
    ts          timestamptz NOT NULL,
    -- The timestamp exactly as the sender wrote it, so the read API can hand it back byte for byte
    -- (timestamptz keeps microseconds and forgets how many fraction digits were sent).
    ts_raw      text        NOT NULL,
    text        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    stream_seq  bigint
);

-- The read API's orders: everything by (ts, message_id), and per sender.
CREATE INDEX IF NOT EXISTS messages_ts_id_idx ON messages (ts, message_id);
CREATE INDEX IF NOT EXISTS messages_from_ts_id_idx ON messages (from_msisdn, ts, message_id);

-- Messages that can never be stored (unparsable, invalid): kept with their raw bytes and the
-- reason, then terminated in JetStream, so nothing is retried forever or dropped silently.
CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigserial   PRIMARY KEY,
    stream_seq  bigint,
    subject     text,
    payload     bytea,
    reason      text,
    request_id  text,
    failed_at   timestamptz DEFAULT now()
);
