//! Why an update attempt failed, with the stable reason label of
//! `worker_update_failure_total{reason}` / `worker_update_rollback_total{reason}` and of the
//! report sent to the server.

use std::path::Path;

/// Why an update was refused, failed or rolled back. [`std::fmt::Display`] is the stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A document or artifact did not verify (`bad_signature`, `hash_mismatch`, ...): the
    /// format crate's own reason and label.
    Verification(manifests::Reason),
    /// `download`: the transfer failed (connection refused, reset, ...).
    Download,
    /// `timeout`: no answer or no data within the read timeout.
    Timeout,
    /// `tls`: the TLS handshake with the update server (or a mirror) failed, most often because
    /// its certificate is not trusted (an internal CA not given with `--ca-bundle`).
    Tls,
    /// `too_slow`: the transfer stayed below the minimum rate.
    TooSlow,
    /// `http_<status>`: the server answered with a status retrying will not change.
    Http(u16),
    /// `server`: the server answered 5xx or 429.
    Server,
    /// `malformed`: the update server's answer could not be read.
    Malformed,
    /// `too_large`: a metadata answer of the update server (handshake, `/latest`, a root
    /// document) was larger than the agent reads ([`crate::client::METADATA_LIMIT`]).
    TooLarge,
    /// `no_space`: the disk is full.
    NoSpace,
    /// `read_only`: the file system is read-only.
    ReadOnly,
    /// `permission_denied`: a file could not be written for lack of permission.
    PermissionDenied,
    /// `io`: another local file operation failed.
    Io,
    /// `trust_state`: the stored trust state (or the installed root) is unusable.
    TrustState,
    /// `not_executable`: the staged binary cannot be executed (ENOEXEC, EACCES).
    NotExecutable,
    /// `spawn_failed`: the staged binary could not be started for another reason.
    SpawnFailed,
    /// `exited_before_ready`: the new version exited before announcing readiness.
    ExitedBeforeReady,
    /// `not_ready`: the new version did not become ready in time.
    NotReady,
    /// `died_in_probation`: the new version exited during probation.
    DiedInProbation,
    /// `self_check_failed`: the new version came up but its probation self-check failed (a
    /// runner port did not answer `/runner/health`, or the synthetic encode failed).
    SelfCheckFailed,
    /// `probation_interrupted`: probation was interrupted: by a stop (SIGINT/SIGTERM; outcome
    /// `deferred`, the version is probed again), or, as a rollback, by the supervisor dying
    /// without a word (`kill -9`) too often.
    ProbationInterrupted,
    /// `swap_failed`: the install path could not be replaced after probation passed.
    SwapFailed,
    /// `busy`: tasks were still running after the maximum deferral.
    Busy,
    /// `delta_failed`: a signed patch could not be used (download, hash, size, decode or the
    /// patched result's hash); the same attempt then downloads the full artifact. An
    /// environment failure, not a release defect.
    DeltaFailed,
}

impl FailureReason {
    /// The label of a fixed-name reason (all but [`FailureReason::Http`]).
    fn fixed_label(self) -> Option<&'static str> {
        Some(match self {
            FailureReason::Verification(reason) => reason.as_str(),
            FailureReason::Download => "download",
            FailureReason::Timeout => "timeout",
            FailureReason::Tls => "tls",
            FailureReason::TooSlow => "too_slow",
            FailureReason::Http(_) => return None,
            FailureReason::Server => "server",
            FailureReason::Malformed => "malformed",
            FailureReason::TooLarge => "too_large",
            FailureReason::NoSpace => "no_space",
            FailureReason::ReadOnly => "read_only",
            FailureReason::PermissionDenied => "permission_denied",
            FailureReason::Io => "io",
            FailureReason::TrustState => "trust_state",
            FailureReason::NotExecutable => "not_executable",
            FailureReason::SpawnFailed => "spawn_failed",
            FailureReason::ExitedBeforeReady => "exited_before_ready",
            FailureReason::NotReady => "not_ready",
            FailureReason::DiedInProbation => "died_in_probation",
            FailureReason::SelfCheckFailed => "self_check_failed",
            FailureReason::ProbationInterrupted => "probation_interrupted",
            FailureReason::SwapFailed => "swap_failed",
            FailureReason::Busy => "busy",
            FailureReason::DeltaFailed => "delta_failed",
        })
    }

    /// The label, as in metrics, outbox records and reports.
    pub fn label(self) -> String {
        self.to_string()
    }

    /// The label a local file error gets: which kind (full disk, read-only, ...).
    pub fn of_io(error: &std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::StorageFull => FailureReason::NoSpace,
            std::io::ErrorKind::ReadOnlyFilesystem => FailureReason::ReadOnly,
            std::io::ErrorKind::PermissionDenied => FailureReason::PermissionDenied,
            _ => FailureReason::Io,
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self, self.fixed_label()) {
            (_, Some(label)) => f.write_str(label),
            (FailureReason::Http(status), None) => write!(f, "http_{status}"),
            (_, None) => Ok(()),
        }
    }
}

impl From<manifests::Reason> for FailureReason {
    fn from(reason: manifests::Reason) -> Self {
        FailureReason::Verification(reason)
    }
}

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
