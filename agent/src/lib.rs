//! The worker agent.
pub mod child;
pub mod client;
pub mod commands;
pub mod config;
pub mod config_check;
pub mod download;
pub mod error;
pub mod failpoint;
pub mod handover;
pub mod logs;
pub mod metrics;
pub mod simulate;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod tasks;
pub mod updater;
