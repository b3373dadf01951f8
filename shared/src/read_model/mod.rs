//! The read model: the aggregate tables the read API answers from instead of counting
//! `messages` (`message_totals`, `sender_stats`, `recipient_stats`, `message_hours`,
//! `message_days`), and the UTC hour and day buckets they are kept in.
//!
//! The invariant, which every transaction that changes `messages` keeps and every read relies on:
//! **each aggregate equals a COUNT over `messages`**: `message_totals.total_messages` = `count(*)`;
//! `sender_stats.count` / `recipient_stats.count` = `count(*)` per `from_msisdn` / `to_msisdn`
//! (a key whose count fell to 0 keeps its row at 0); `senders_count` / `recipients_count` = the
//! keys whose count is above 0; `message_hours.count` / `message_days.count` = `count(*)` per
//! UTC hour / day of `ts`; and `sender_stats.band` = `sender_band(count)`, the coarse rank that
//! /stats finds the busiest senders by (migration 20261204000008_cheaper_upkeep.sql says why). [`upkeep`] keeps it, in the same transaction as the insert or delete,
//! with one statement for both (apply_changes.sql); [`buckets`] is the one place that says which
//! bucket an instant falls in on the Rust side.

pub mod buckets;
pub mod upkeep;
