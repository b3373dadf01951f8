-- After a redrive's PubAck: deletes the dead letters that were redriven, each only if `times` is
-- what it was when it was read. If the worker dead-lettered the same bytes again meanwhile (the
-- redriven message failed again, or an older copy did), `times` grew and the row stays.
--
--   $1 bigint[]  ids
--   $2 int[]     times as read, one per id
--
-- Returns the ids deleted.
DELETE FROM dead_letters d
USING UNNEST($1::bigint[], $2::int[]) AS u(id, times)
WHERE d.id = u.id AND d.times = u.times
RETURNING d.id;
