-- Dead letters stored, by kind ('invalid', 'refused', 'max_deliveries'), for the worker_dead_letters_stored gauge.
-- A kind with none has no row; the caller sets it to 0.
SELECT kind, count(*) AS "count!" FROM dead_letters GROUP BY kind;
