//! The runner layer's errors: why a task did not complete ([`TaskError`], shared by the
//! pipelines, the tool runner and the source downloads) and a failed durable write
//! ([`WriteError`]).

use std::path::{Path, PathBuf};

/// Why a task did not complete. The registry turns it into the ESUP status and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// `/task/stop` was called: status `failed`, message "Cancelled by user.".
    #[error("Cancelled by user.")]
    Cancelled,
    /// `EXTERNAL_SCRIPT_TIMEOUT_SECONDS` elapsed: status `timeout`.
    #[error("Script timeout after {0} seconds")]
    Timeout(u64),
    /// The input is unusable (bad parameter value, unreadable media, ...): status `failed`.
    #[error("{0}")]
    BadInput(String),
    /// A tool or the system failed: status `failed`.
    #[error("{0}")]
    Failed(String),
}

impl TaskError {
    /// A [`TaskError::Failed`] for an I/O error on `path`.
    pub fn io(what: &str, path: &Path, error: &std::io::Error) -> Self {
        TaskError::Failed(format!("{what} {}: {error}", path.display()))
    }
}

/// A file could not be written durably (see [`crate::fs::write_atomic`]).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}", path = path.display())]
pub struct WriteError {
    /// The file being written.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}
