-- The second statement of the transaction that drops an expired partition (retention.rs), before
-- it touches anything else. No parameters.
--
-- SHARE ROW EXCLUSIVE on `messages` (and so on every partition) waits for the batches being
-- written to finish and keeps new ones out until the commit, while reads go on. Taken first, so
-- no lock cycle is possible: no writer is left holding `messages` while it waits for an
-- aggregate row this transaction has taken, which matters because the partition's rows leave the
-- aggregates in several statements here, each locking its rows in its own order. It conflicts
-- with itself, so two drops never overlap either.
LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE
