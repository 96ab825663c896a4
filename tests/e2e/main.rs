//! End-to-end tests: the real binaries, real files, real keys. One test binary (like ripgrep's),
//! one module per area.

mod agent_commands;
mod agent_config;
mod agent_crash;
mod agent_download;
mod agent_network;
mod agent_outage;
mod agent_probation;
mod agent_retry;
mod agent_signals;
mod agent_trust;
mod agent_update;
mod architecture;
mod console;
mod docs;
mod enrolment;
mod esup_hostile;
mod esup_media;
mod esup_protocol;
mod esup_transcription;
mod fleet_safety;
mod observability;
mod release_admin;
mod release_cli;
mod release_keys;
mod rotation;
mod server;
mod server_limits;
mod simulator;
mod versions;
