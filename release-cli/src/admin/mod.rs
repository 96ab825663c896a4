//! The server commands: publish releases, artifacts and roots, move channels, read the fleet
//! status and the audit trail, through the update server's admin API
//! (`wiki/operations/update-server-api.md`). They carry an admin token, never a private key: every
//! document they send was signed offline beforehand.
//!
//! `client` is the authenticated connection (token, timeouts, uploads, how answers and refusals
//! are read); `publish`, `channel` and `status` are the commands; `output` renders the server's
//! answers as tables.

mod catalog;
mod channel;
mod client;
mod enrol;
mod output;
mod publish;
mod rollout;
mod status;

pub use catalog::{channel, worker, ChannelCommand, WorkerCommand};
pub use channel::{
    halt, promote, resume, rollback, HaltArgs, PromoteArgs, ResumeArgs, RollbackArgs,
};
pub use client::ServerRefused;
pub use enrol::{enroll_token, EnrollTokenArgs};
pub use publish::{publish, publish_root, PublishArgs, PublishRootArgs};
pub use rollout::{rollout, RolloutCommand};
pub use status::{audit, status, AuditArgs, StatusArgs};
