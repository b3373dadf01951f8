-- The rows a drain stored, found by their ts (growth.rs): a growth run's backlog carries a ts
-- range of its own, after every seeded row, so this is an index range scan however large the
-- table is (a count over `created_at` would scan all of it).
--
--   $1 timestamptz  the first ts of the backlog
--
-- One row: `rows`, and `first` / `last`, the earliest and latest `created_at` (the inserting
-- transactions' starts), NULL when no row matched.
SELECT count(*) AS "rows!", min(created_at) AS first, max(created_at) AS last
FROM messages
WHERE ts >= $1
