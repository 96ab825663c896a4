//! Why an update attempt failed, with the stable reason label of
//! `worker_update_failure_total{reason}` and of the report sent to the server.

/// A failed update step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct UpdateFailure {
    /// Stable label: the trust-format reasons (`bad_signature`, `hash_mismatch`, ...) plus
    /// `download`, `timeout`, `too_slow`, `http_<status>`, `no_space`, `read_only`,
    /// `permission_denied`, `io`, `server`.
    pub reason: String,
    /// What happened, for logs.
    pub message: String,
    /// Worth retrying (network trouble), as opposed to a verdict (bad data, full disk).
    pub retryable: bool,
}

impl UpdateFailure {
    /// A failure that retrying will not fix.
    pub fn fatal(reason: &str, message: impl Into<String>) -> Self {
        UpdateFailure {
            reason: reason.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that may go away on retry.
    pub fn retryable(reason: &str, message: impl Into<String>) -> Self {
        UpdateFailure {
            reason: reason.to_owned(),
            message: message.into(),
            retryable: true,
        }
    }

    /// A local file operation failed: the label says which kind (full disk, read-only, ...).
    pub fn io(what: &str, error: &std::io::Error) -> Self {
        let reason = match error.kind() {
            std::io::ErrorKind::StorageFull => "no_space",
            std::io::ErrorKind::ReadOnlyFilesystem => "read_only",
            std::io::ErrorKind::PermissionDenied => "permission_denied",
            _ => "io",
        };
        Self::fatal(reason, format!("{what}: {error}"))
    }
}

impl From<manifests::Error> for UpdateFailure {
    fn from(error: manifests::Error) -> Self {
        Self::fatal(error.reason().as_str(), error.to_string())
    }
}
