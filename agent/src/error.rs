//! Why an update attempt failed, with the stable reason label of
//! `worker_update_failure_total{reason}` / `worker_update_rollback_total{reason}` and of the
//! report sent to the server.

use std::path::Path;

/// Why an update was refused, failed or rolled back: the one list, shared with the update
/// server, in the format crate (which also says which reasons are release defects).
pub use manifests::FailureReason;

/// A failed update step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct UpdateFailure {
    /// Why, with its stable label.
    pub reason: FailureReason,
    /// What happened, naming the file or URL concerned, for logs.
    pub message: String,
    /// Worth retrying (network trouble), as opposed to a verdict (bad data, full disk).
    pub retryable: bool,
}

impl UpdateFailure {
    /// A failure that retrying will not fix.
    pub fn fatal(reason: FailureReason, message: impl Into<String>) -> Self {
        UpdateFailure {
            reason,
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that may go away on retry.
    pub fn retryable(reason: FailureReason, message: impl Into<String>) -> Self {
        UpdateFailure {
            reason,
            message: message.into(),
            retryable: true,
        }
    }

    /// A local file operation on `path` failed: the label says which kind (full disk,
    /// read-only, ...).
    pub fn io(what: &str, path: &Path, error: &std::io::Error) -> Self {
        Self::fatal(
            FailureReason::of_io(error),
            format!("{what} {}: {error}", path.display()),
        )
    }
}

impl From<manifests::Error> for UpdateFailure {
    fn from(error: manifests::Error) -> Self {
        Self::fatal(error.reason().into(), error.to_string())
    }
}

impl From<crate::state::StateError> for UpdateFailure {
    /// A state-directory file could not be read or written (the error names the file).
    fn from(error: crate::state::StateError) -> Self {
        Self::fatal(FailureReason::Io, error.to_string())
    }
}
