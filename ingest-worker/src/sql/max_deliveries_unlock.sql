-- Releases max_deliveries_lock.sql.
--
--   $1 text  dedup_key: hex SHA-256 of the payload
SELECT pg_advisory_unlock(hashtextextended($1, 0));
