//! Dead letters for the admin API (`/admin/dead-letters`, routes/dead_letters.rs): what the
//! routes accept ([`params`]), the statements they run ([`store`], each whole in a `.sql` file
//! beside it) and the redrive ([`redrive`]: the raw bytes back through JetStream, the row deleted
//! after the PubAck only if it is unchanged). The worker writes the rows
//! (ingest-worker/src/sql/store_batch.sql).

pub mod params;
pub mod redrive;
pub mod store;
