//! The read API's queries: what `GET /messages` accepts ([`params`], [`cursor`]) and the
//! statements behind `/messages` ([`page`]) and `/stats` ([`stats`]), each in a `.sql` file
//! beside the function that runs it. The aggregates they read, and the rule that keeps them
//! equal to a count over `messages`, are in `ingest_shared::read_model`.

pub mod cursor;
pub mod encode;
pub mod encode_thread;
pub mod export;
pub mod format;
pub mod one;
pub mod page;
pub mod params;
pub mod series;
pub mod stats;

use ingest_shared::read_model::buckets::TimeBuckets;

type QueryAs<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds the eight parameters every statement that adds up the hour and day aggregates takes
/// after its own, in the order their headers list them: the whole-hour bounds, then the hours
/// before the first whole day, the whole days and the hours after the last.
fn bind_buckets<'q, O>(query: QueryAs<'q, O>, buckets: &TimeBuckets) -> QueryAs<'q, O> {
    query
        .bind(buckets.first_hour)
        .bind(buckets.end_hour)
        .bind(buckets.hours_before.0)
        .bind(buckets.hours_before.1)
        .bind(buckets.days.0)
        .bind(buckets.days.1)
        .bind(buckets.hours_after.0)
        .bind(buckets.hours_after.1)
}
