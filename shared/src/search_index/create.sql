-- The search index on `messages` itself (search_index/mod.rs), before its parts: a partitioned
-- index that stays INVALID until every partition's part is attached (missing.sql). No
-- parameters. `ON ONLY` builds nothing, so this is a catalog change: it takes SHARE on
-- `messages` for that moment (writes wait, reads go on). A partition created from now on gets
-- its part with it. Same definition as the migration 20261128000004_read_api.sql.
CREATE INDEX IF NOT EXISTS messages_text_trgm_idx ON ONLY messages USING gin (text gin_trgm_ops)
