//! Prometheus label values from request data, mapped into known sets so that no client can
//! create series: a `reason` outside the agents' labels, a `version` that is not a published
//! release and a `channel` that is not served are all counted as [`OTHER`]. The store keeps
//! what was sent; only the metrics are bounded.

use std::collections::BTreeSet;

use super::{read_lock, App, NOT_RELEASE_DEFECTS};

/// The label value of anything outside the known sets.
pub const OTHER: &str = "other";

/// The agents' fixed failure labels (`worker_agent::FailureReason`), besides the verification
/// reasons of [`manifests::Reason`] and `http_<status>`; `tests/e2e/server_limits.rs` checks
/// that the agent's source names no other.
pub const AGENT_REASONS: &[&str] = &[
    "download",
    "timeout",
    "tls",
    "too_slow",
    "server",
    "malformed",
    "too_large",
    "no_space",
    "read_only",
    "permission_denied",
    "io",
    "trust_state",
    "not_executable",
    "spawn_failed",
    "exited_before_ready",
    "not_ready",
    "died_in_probation",
    "self_check_failed",
    "probation_interrupted",
    "swap_failed",
    "busy",
    "delta_failed",
];

/// `reason` as a label: itself when it is a known reason label (or empty, for a success), else
/// [`OTHER`].
pub fn reason_label(reason: &str) -> &str {
    let http_status = reason
        .strip_prefix("http_")
        .is_some_and(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()));
    let known = reason.is_empty()
        || http_status
        || AGENT_REASONS.contains(&reason)
        || NOT_RELEASE_DEFECTS.contains(&reason)
        || manifests::Reason::ALL.iter().any(|r| r.as_str() == reason);
    if known {
        reason
    } else {
        OTHER
    }
}

/// The versions and channels label values may name, as of now.
#[derive(Debug, Default)]
pub(super) struct KnownLabels {
    /// Published release versions.
    versions: BTreeSet<String>,
    /// Served channels.
    channels: BTreeSet<String>,
}

impl KnownLabels {
    /// `version` when it is a published release, else [`OTHER`].
    pub(super) fn version(&self, version: &str) -> String {
        pick(&self.versions, version)
    }

    /// `channel` when it is served, else [`OTHER`].
    pub(super) fn channel(&self, channel: &str) -> String {
        pick(&self.channels, channel)
    }
}

fn pick(known: &BTreeSet<String>, value: &str) -> String {
    if known.contains(value) { value } else { OTHER }.to_owned()
}

impl App {
    /// A snapshot of the known versions and channels (taken before locking the inventory).
    pub(super) fn known_labels(&self) -> KnownLabels {
        KnownLabels {
            versions: read_lock(&self.releases).keys().cloned().collect(),
            channels: read_lock(&self.views).keys().cloned().collect(),
        }
    }
}
