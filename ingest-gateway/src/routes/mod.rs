pub mod dead_letters;
pub mod export;
pub mod messages;
pub mod sources;
pub mod stats;
pub mod ui;
pub mod webhook;
pub mod whatsapp;

/// The metrics of every sender endpoint, registered at start-up.
pub const SENDERS: [&crate::metrics::SenderMetrics; 2] = [&webhook::METRICS, &whatsapp::METRICS];
