-- The process id of this connection's backend, whose CPU time the upkeep reference reads from
-- /proc. No parameters; returns one row, `pid`.
SELECT pg_backend_pid() AS "pid!"
