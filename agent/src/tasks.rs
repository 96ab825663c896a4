//! The task layer's contract with the updater is the runner crate's [`TaskGate`]: how many
//! tasks run, and a drain switch that makes the agent refuse new tasks (show itself `busy`) so
//! an update can wait for the running ones to finish. Tasks are never cut by an update.

pub use esup_runner::gate::{TaskGate, TaskGuard};
