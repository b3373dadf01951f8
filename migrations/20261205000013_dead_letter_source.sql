-- The source a dead letter's bytes came in through (the `X-Source` header of the delivery the
-- row describes), so that a redrive republishes them as that source and the message it stores
-- keeps it (ingest-gateway/src/dead_letters/redrive.rs).
--
-- NULL is "not known", as in `messages.source`: the rows written before this column existed, and
-- bytes published without the header (by an older gateway). A redrive of such a row publishes
-- without the header, so its message is stored with NULL too, never a guessed `default`.
--
-- Nullable and without a default, so adding it rewrites no row.
ALTER TABLE dead_letters ADD COLUMN source text;
