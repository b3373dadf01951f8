-- Dead letters for triage (issue #18): what kind of failure, which bytes (so the same payload
-- failing again updates one row instead of adding another), when first and last seen, how often.
--
--   kind        'invalid' (the payload is not a valid message) or 'refused' (Postgres refused
--               the row, e.g. a constraint)
--   dedup_key   hex SHA-256 of the payload bytes; rows stored before this migration get
--               'legacy-<id>', unique and never equal to a digest
--   first_seen  when these bytes were first dead-lettered
--   last_seen   when they were last dead-lettered (retention and the API's since/until use it)
--   times       how often these bytes were dead-lettered
--
-- The worker upserts on dedup_key (ingest-worker/src/sql/store_batch.sql). Upgrading: stop the
-- workers of the older version before this runs (as for the read model's aggregates): they insert
-- dead letters without a kind and a dedup_key, which these columns now require.
ALTER TABLE dead_letters
    ADD COLUMN IF NOT EXISTS kind       text,
    ADD COLUMN IF NOT EXISTS dedup_key  text,
    ADD COLUMN IF NOT EXISTS first_seen timestamptz DEFAULT now(),
    ADD COLUMN IF NOT EXISTS last_seen  timestamptz DEFAULT now(),
    ADD COLUMN IF NOT EXISTS times      integer     DEFAULT 1;

-- Rows from before: the reason says which kind they are (the worker wrote these prefixes).
UPDATE dead_letters SET
    kind = CASE WHEN reason LIKE 'refused by postgres%' THEN 'refused' ELSE 'invalid' END,
    dedup_key = 'legacy-' || id,
    first_seen = coalesce(failed_at, now()),
    last_seen = coalesce(failed_at, now()),
    times = 1
WHERE dedup_key IS NULL;

ALTER TABLE dead_letters
    ALTER COLUMN kind SET NOT NULL,
    ALTER COLUMN dedup_key SET NOT NULL,
    ALTER COLUMN first_seen SET NOT NULL,
    ALTER COLUMN last_seen SET NOT NULL,
    ALTER COLUMN times SET NOT NULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'dead_letters_kind_check') THEN
        ALTER TABLE dead_letters
            ADD CONSTRAINT dead_letters_kind_check CHECK (kind IN ('invalid', 'refused'));
    END IF;
END
$$;

CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_dedup_key ON dead_letters (dedup_key);
-- since/until filter on last_seen; retention deletes the oldest last_seen first. The API pages
-- by id (the primary key), with the filters applied to those rows.
CREATE INDEX IF NOT EXISTS dead_letters_last_seen ON dead_letters (last_seen, id);
