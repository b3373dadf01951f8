pub mod dead_letters;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod stats;
pub mod webhook;
pub mod whatsapp;
