-- Serialises the workers moving the same payload to dead_letters (max_deliveries.rs): held on
-- one connection while another checks and writes, so two workers finding the same message
-- write one row once. A session lock, so a worker that dies holding it releases it with its
-- connection.
--
--   $1 text  dedup_key: hex SHA-256 of the payload
SELECT pg_advisory_lock(hashtextextended($1, 0));
