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
