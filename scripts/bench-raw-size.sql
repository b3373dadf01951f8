-- What a stored row costs on disk, with and without its raw payload (BENCHMARKS.md "Raw payload
-- cost"): run against the database of a drain run (`psql "$URL" -f scripts/bench-raw-size.sql`).
--
-- `table_bytes_per_row` is every partition of `messages` with its indexes and TOAST, divided by
-- its rows; `row_bytes` and `raw_bytes` are the averages of pg_column_size over the rows, the
-- whole row and its `raw` alone (0 when NULL).
SELECT count(*) AS rows,
       round((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits
              WHERE inhparent = 'messages'::regclass) / greatest(count(*), 1)) AS table_bytes_per_row,
       round(avg(pg_column_size(m.*))) AS row_bytes,
       round(avg(coalesce(pg_column_size(m.raw), 0))) AS raw_bytes,
       round(avg(octet_length(m.text))) AS text_bytes
FROM messages m;
