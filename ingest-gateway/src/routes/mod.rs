pub mod messages;
pub mod stats;
pub mod webhook;
pub mod whatsapp;
