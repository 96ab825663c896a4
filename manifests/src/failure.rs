//! Why an agent's update attempt failed: the one list of failure reasons, their stable labels
//! (the `reason` of `worker_update_failure_total`, of outbox records and of reports), and the
//! one classification the update server's auto-halt and promotion gate rely on: a
//! [release defect](FailureReason::is_release_defect) (the new version itself misbehaved) or
//! the environment (network, mirror, disk, clock, outage), which says nothing about the release.
//!
//! Agent and server share this module, so a reason the agent adds is classified where it is
//! added, and the server never guesses from a label it does not know.

use crate::error::Reason;

/// Why an update was refused, failed or rolled back. [`std::fmt::Display`] is the stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A document or artifact did not verify (`bad_signature`, `hash_mismatch`, ...): the
    /// format crate's own reason and label. Environment: a mirror serving bad bytes, a clock
    /// past an expiry or a refusal to downgrade says nothing about the release's code.
    Verification(Reason),
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
    /// document) was larger than the agent reads.
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
    /// `crashed_after_commit`: the new version passed probation, was committed, then crashed.
    /// Classified here so the server counts it the day an agent reports it; today's agent
    /// restarts a crashed committed worker without a report.
    CrashedAfterCommit,
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
    /// Every reason with a fixed label (all but [`FailureReason::Verification`], whose labels
    /// are [`Reason::ALL`], and [`FailureReason::Http`], `http_<status>`).
    pub const FIXED: &'static [FailureReason] = &[
        FailureReason::Download,
        FailureReason::Timeout,
        FailureReason::Tls,
        FailureReason::TooSlow,
        FailureReason::Server,
        FailureReason::Malformed,
        FailureReason::TooLarge,
        FailureReason::NoSpace,
        FailureReason::ReadOnly,
        FailureReason::PermissionDenied,
        FailureReason::Io,
        FailureReason::TrustState,
        FailureReason::NotExecutable,
        FailureReason::SpawnFailed,
        FailureReason::ExitedBeforeReady,
        FailureReason::NotReady,
        FailureReason::DiedInProbation,
        FailureReason::SelfCheckFailed,
        FailureReason::CrashedAfterCommit,
        FailureReason::ProbationInterrupted,
        FailureReason::SwapFailed,
        FailureReason::Busy,
        FailureReason::DeltaFailed,
    ];

    /// The reasons that are the release's fault: the new version ran and misbehaved. Only
    /// these count towards the server's auto-halt and its canary gate; everything else
    /// (mirror and network errors, full or read-only disks, expired statements, outages,
    /// refusals, interrupted probations) is the environment.
    pub const RELEASE_DEFECTS: &'static [FailureReason] = &[
        FailureReason::ExitedBeforeReady,
        FailureReason::NotReady,
        FailureReason::DiedInProbation,
        FailureReason::SelfCheckFailed,
        FailureReason::CrashedAfterCommit,
    ];

    /// Whether this failure is the release's fault (see [`FailureReason::RELEASE_DEFECTS`]).
    pub fn is_release_defect(self) -> bool {
        Self::RELEASE_DEFECTS.contains(&self)
    }

    /// Whether a reported label names a release defect; an unknown label is not one (a
    /// client cannot halt a release with a made-up reason).
    pub fn label_is_release_defect(label: &str) -> bool {
        Self::from_label(label).is_some_and(Self::is_release_defect)
    }

    /// The reason a label names, if any.
    pub fn from_label(label: &str) -> Option<Self> {
        if let Some(code) = label.strip_prefix("http_") {
            return (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
                .then(|| code.parse().ok().map(FailureReason::Http))
                .flatten();
        }
        Self::FIXED
            .iter()
            .copied()
            .find(|r| r.fixed_label() == Some(label))
            .or_else(|| {
                Reason::ALL
                    .iter()
                    .find(|r| r.as_str() == label)
                    .map(|r| FailureReason::Verification(*r))
            })
    }

    /// The label of a fixed-name reason (all but [`FailureReason::Http`]).
    pub const fn fixed_label(self) -> Option<&'static str> {
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
            FailureReason::CrashedAfterCommit => "crashed_after_commit",
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

impl From<Reason> for FailureReason {
    fn from(reason: Reason) -> Self {
        FailureReason::Verification(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_reads_back_as_its_reason() {
        // `malformed` is both an answer the agent could not read and a document that did not
        // parse: one label, so a label is compared, not the variant.
        let labels = FailureReason::FIXED
            .iter()
            .map(|r| r.label())
            .chain(Reason::ALL.iter().map(|r| r.as_str().to_owned()));
        for label in labels {
            let read = FailureReason::from_label(&label).map(FailureReason::label);
            assert_eq!(read.as_deref(), Some(label.as_str()));
        }
        assert_eq!(
            FailureReason::from_label("http_404"),
            Some(FailureReason::Http(404))
        );
        assert_eq!(FailureReason::from_label("http_4044"), None);
        assert_eq!(FailureReason::from_label("made_up"), None);
    }

    #[test]
    fn only_a_misbehaving_new_version_is_a_release_defect() {
        for label in [
            "exited_before_ready",
            "not_ready",
            "died_in_probation",
            "self_check_failed",
            "crashed_after_commit",
        ] {
            assert!(FailureReason::label_is_release_defect(label), "{label}");
        }
        for label in [
            "hash_mismatch",
            "size_mismatch",
            "expired",
            "download",
            "timeout",
            "no_space",
            "read_only",
            "server",
            "http_503",
            "downgrade",
            "probation_interrupted",
            "busy",
            "made_up",
            "",
        ] {
            assert!(!FailureReason::label_is_release_defect(label), "{label}");
        }
    }
}
