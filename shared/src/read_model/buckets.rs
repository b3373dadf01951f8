//! Which hour and day buckets a time range covers (filled in by the read-API refactor).
