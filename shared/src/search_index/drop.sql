-- Drops the search index of `messages` with every part attached to it (search_index/mod.rs). No
-- parameters. Postgres cannot drop a partitioned index CONCURRENTLY: this takes ACCESS EXCLUSIVE
-- on `messages` and its partitions until it is done, which is a catalog change and the files'
-- removal, but it first waits for the statements under way on `messages` to end, and the
-- statements that come meanwhile wait behind it.
DROP INDEX IF EXISTS messages_text_trgm_idx
