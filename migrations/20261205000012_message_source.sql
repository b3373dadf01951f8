-- The source a message came in through (`default` for /webhook, `whatsapp` for
-- /webhook/whatsapp, a configured source's id for /webhook/{id}), and the `source` filter of the
-- read API.
--
-- NULL is "not known": the rows stored before this column existed, and a message published
-- without the source header (by an older gateway, or a dead letter redriven, which does not keep
-- it). The worker does not guess `default` for those: an older gateway published WhatsApp's
-- messages without the header too, and a filter on `default` must not return them.
--
-- Added on the partitioned parent, so every partition has it; nullable and without a default,
-- so adding it rewrites no row.
ALTER TABLE messages ADD COLUMN source text;

-- `?source=` alone, like `from=` alone, is a range of this index already in (ts, message_id)
-- order: its page and its counted total cost that source's rows, not a walk of the ts index
-- past every other source's (a source with a small share of the traffic would otherwise make
-- the count a scan of the whole table). Defined on the parent, so every partition has it. On a
-- database that already holds many rows the build holds inserts back while it runs (the
-- worker's batches wait and retry; JetStream keeps the messages meanwhile).
CREATE INDEX messages_source_ts_idx ON messages (source, ts, message_id);

-- messages_matching with the source filter; the rules of 20261205000011_filters.sql hold (plain
-- SQL, STABLE, inlined). The new argument is last and DEFAULT NULL, so a statement that does not
-- pass it is unchanged.
DROP FUNCTION messages_matching(text, text, timestamptz, timestamptz, text);
CREATE FUNCTION messages_matching(
    sender text, recipient text, since timestamptz, until timestamptz, pattern text,
    source_id text DEFAULT NULL
)
RETURNS SETOF messages
LANGUAGE sql STABLE AS $$
    SELECT * FROM messages m
    WHERE (sender IS NULL OR m.from_msisdn = sender)
      AND (recipient IS NULL OR m.to_msisdn = recipient)
      AND (since IS NULL OR m.ts >= since)
      AND (until IS NULL OR m.ts < until)
      AND (pattern IS NULL OR m.text ILIKE pattern)
      AND (source_id IS NULL OR m.source = source_id)
$$;
