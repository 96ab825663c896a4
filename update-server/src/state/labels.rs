//! Prometheus label values from request data, mapped into known sets so that no client can
//! create series: a `reason` outside the agents' labels, a `version` that is not a published
//! release and a `channel` that is not served are all counted as [`OTHER`]. The store keeps
//! what was sent; only the metrics are bounded.

use std::collections::BTreeSet;

use super::{read_lock, App};

/// The label value of anything outside the known sets.
pub const OTHER: &str = "other";

/// `reason` as a label: itself when it is a known reason label (one of the agents'
/// `manifests::FailureReason` labels, verification reasons and `http_<status>` among them, or
/// empty, for a success), else [`OTHER`].
pub fn reason_label(reason: &str) -> &str {
    if reason.is_empty() || manifests::FailureReason::from_label(reason).is_some() {
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

#[cfg(test)]
mod tests {
    use manifests::{FailureReason, Reason};

    use super::{reason_label, OTHER};

    /// Every label an agent reports is its own label value (the list is the agent's own, in
    /// the format crate), and nothing else is.
    #[test]
    fn every_agent_reason_is_its_own_label_and_nothing_else_is() {
        let labels = FailureReason::FIXED
            .iter()
            .map(|r| r.label())
            .chain(Reason::ALL.iter().map(|r| r.as_str().to_owned()))
            .chain(["http_404".to_owned(), String::new()]);
        for label in labels {
            assert_eq!(reason_label(&label), label);
        }
        for made_up in ["made_up", "http_4044", "http_abc", "crashed"] {
            assert_eq!(reason_label(made_up), OTHER);
        }
    }
}
