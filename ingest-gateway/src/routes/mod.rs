pub mod dead_letters;
pub mod export;
pub mod messages;
pub mod stats;
pub mod ui;
pub mod webhook;
pub mod whatsapp;
