//! The read API's aggregates (totals, per-sender and per-recipient counts, hourly and daily
//! buckets), kept exact by the statements that change `messages`: the batch insert (store.rs)
//! adds what it really inserted, the retention delete (retention.rs) subtracts what it really
//! deleted.

/// CTE `$cte`: the rows of `$rows` counted into `$table`, one bucket per UTC `$unit` of `ts`,
/// buckets sorted, after CTE `$after` has finished.
macro_rules! time_buckets {
    ($cte:literal, $table:literal, $unit:literal, $rows:literal, $sign:literal, $after:literal) => {
        concat!(
            $cte,
            " AS (
    INSERT INTO ",
            $table,
            " AS b (",
            $unit,
            ", count)
    SELECT date_trunc('",
            $unit,
            "', ts, 'UTC'), ",
            $sign,
            " * count(*) FROM ",
            $rows,
            "
    WHERE (SELECT count(*) FROM ",
            $after,
            ") >= 0
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (",
            $unit,
            ") DO UPDATE SET count = b.count + EXCLUDED.count
    RETURNING 1
),
"
        )
    };
}

/// How many numbers of column `$key` the upsert CTE `$cte` (returning `$key, count`) brought
/// into the distinct count minus how many it took out: in when the count became exactly what
/// this statement added, out when it became 0. One column of `counts`, named `$cte`.
macro_rules! distinct_change {
    ($cte:literal, $key:literal, $rows:literal, $sign:literal) => {
        concat!(
            "           (SELECT count(*) FILTER (WHERE g.n > 0 AND c.count = g.n)
                 - count(*) FILTER (WHERE g.n < 0 AND c.count = 0)
            FROM ",
            $cte,
            " c
            JOIN (SELECT ",
            $key,
            ", ",
            $sign,
            " * count(*) AS n FROM ",
            $rows,
            " GROUP BY 1) g
            USING (",
            $key,
            ")) AS ",
            $cte,
            ",
"
        )
    };
}

/// The CTEs that apply the rows of CTE `$rows` (with `from_msisdn`, `to_msisdn`, `ts`), each
/// counting `$sign` (`1` inserted, `-1` deleted), then `SELECT` how many rows there were.
///
/// Lock order, the same for every statement so that concurrent batches and retention never
/// deadlock: senders sorted (the upsert groups, so waits for, every row of `$rows` first);
/// recipients sorted, gated on the senders having finished; hour buckets sorted, gated on the
/// recipients; day buckets sorted, gated on the hours; the single totals row last, by `totals`,
/// which Postgres runs after the main query has read `counts` (and so every other CTE) to
/// completion.
///
/// A sender or recipient whose count reaches 0 keeps its row at 0. It enters `senders_count` /
/// `recipients_count` when its count becomes exactly what a batch added (it had no row, or 0), and
/// leaves them when its count becomes 0.
macro_rules! apply_to_aggregates {
    ($rows:literal, $sign:literal) => {
        concat!(
            "senders AS (
    INSERT INTO sender_stats AS s (from_msisdn, count)
    SELECT from_msisdn, ",
            $sign,
            " * count(*) FROM ",
            $rows,
            "
    GROUP BY from_msisdn ORDER BY from_msisdn
    ON CONFLICT (from_msisdn) DO UPDATE SET count = s.count + EXCLUDED.count
    RETURNING s.from_msisdn, s.count
),
recipients AS (
    INSERT INTO recipient_stats AS r (to_msisdn, count)
    SELECT to_msisdn, ",
            $sign,
            " * count(*) FROM ",
            $rows,
            "
    WHERE (SELECT count(*) FROM senders) >= 0
    GROUP BY to_msisdn ORDER BY to_msisdn
    ON CONFLICT (to_msisdn) DO UPDATE SET count = r.count + EXCLUDED.count
    RETURNING r.to_msisdn, r.count
),
",
            time_buckets!("hours", "message_hours", "hour", $rows, $sign, "recipients"),
            time_buckets!("days", "message_days", "day", $rows, $sign, "hours"),
            "counts AS (
    SELECT (SELECT count(*) FROM ",
            $rows,
            ") AS messages,
",
            distinct_change!("senders", "from_msisdn", $rows, $sign),
            distinct_change!("recipients", "to_msisdn", $rows, $sign),
            "           (SELECT count(*) FROM days) AS days
),
totals AS (
    UPDATE message_totals AS t SET
        total_messages   = t.total_messages + ",
            $sign,
            " * c.messages,
        senders_count    = t.senders_count + c.senders,
        recipients_count = t.recipients_count + c.recipients
    FROM counts AS c
    WHERE t.id AND c.messages > 0
)
SELECT messages FROM counts"
        )
    };
}
