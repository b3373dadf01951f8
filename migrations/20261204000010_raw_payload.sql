-- Every message keeps the payload it came from, so nothing a sender sent is lost to the fixed
-- columns: for /webhook the body as posted, for WhatsApp the canonical fields plus the original
-- message object with the `metadata` and `contacts` it came with (shared/src/whatsapp.rs).
-- NULL when the worker runs with RAW_PAYLOAD=drop, and for rows stored before this migration.
--
-- Adding a nullable column without a default changes only the catalog: no partition is
-- rewritten, and partitions created later (ensure_message_partitions copies `messages` with
-- LIKE) get the column too.
ALTER TABLE messages ADD COLUMN raw jsonb;
