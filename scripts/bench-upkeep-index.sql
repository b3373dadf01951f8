-- Which search index `messages` has, for scripts/bench-upkeep.sh: 'trigram' when the trigram
-- index is there and valid, 'none' when it is not there, 'invalid' while a build is under way.
SELECT CASE WHEN i.indexrelid IS NULL THEN 'none' WHEN i.indisvalid THEN 'trigram' ELSE 'invalid' END
FROM (SELECT to_regclass('messages_text_trgm_idx') AS oid) n
LEFT JOIN pg_index i ON i.indexrelid = n.oid;
