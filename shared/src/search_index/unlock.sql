-- Releases the advisory lock taken by try_lock.sql on this same session. $1: the lock key.
SELECT pg_advisory_unlock($1) AS "unlocked!"
