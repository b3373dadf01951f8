-- Builds the trigram search index without blocking writes (search_index/mod.rs). No parameters.
-- Runs outside any transaction (CONCURRENTLY requires it). Same definition as the migration
-- 20261128000004_read_api.sql. IF NOT EXISTS also skips an INVALID index of the same name, so
-- the caller drops one of those first (drop.sql).
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_text_trgm_idx ON messages USING gin (text gin_trgm_ops)
