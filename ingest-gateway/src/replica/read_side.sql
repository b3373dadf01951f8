-- What the server behind DATABASE_READ_URL is, from a read's point of view. No parameters.
--
--   in_recovery      true on a streaming replica; false on a primary (one that was promoted,
--                    or a read URL that never pointed at a replica)
--   replayed         how far it has replayed the primary's WAL, as bytes from the start of the
--                    WAL (NULL on a primary that never was a replica)
--   replay_age_secs  how long ago the last transaction it replayed committed on the primary
--                    (NULL before it replayed any); only meaningful while it is behind
SELECT pg_is_in_recovery() AS "in_recovery!",
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint AS replayed,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8
           AS replay_age_secs
