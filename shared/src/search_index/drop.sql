-- Drops the trigram search index (valid or left INVALID by an interrupted build) without
-- blocking reads or writes (search_index/mod.rs). No parameters. Runs outside any transaction.
DROP INDEX CONCURRENTLY IF EXISTS messages_text_trgm_idx
