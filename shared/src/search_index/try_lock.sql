-- Takes the session-level advisory lock that lets one process at a time change the search
-- index (search_index/mod.rs). $1: the lock key (`LOCK_KEY`). Returns true when taken, false
-- when another session holds it; never waits. Released by unlock.sql or when the session ends.
SELECT pg_try_advisory_lock($1) AS "locked!"
