//! The contract between the supervisor and the worker (its child process), written once and
//! imported by both sides and by the fleet simulator: how the child is started (the role
//! variable), how it says what happened (exit codes), where an update lives on disk next to the
//! install path, and the files they exchange in the state directory (`pending.json`,
//! `ready.json`, `outbox/`), with their serde types. A change here is a change of the protocol
//! between two versions of the agent (an old supervisor judges a new worker and the other way
//! round), so every name and format below is frozen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use manifests::{Release, Signed, Version};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::UpdateClient;
use crate::metrics::Telemetry;
use crate::state::{StateDir, TrustState};

/// Exit code of a child that staged a verified update: "restart me into it".
pub const EXIT_STAGED: i32 = 75;
/// Exit code of a child that refuses to run: restarting it cannot help (systemd does not).
pub const EXIT_REFUSED: i32 = 78;

/// Environment variable that makes `worker-agent run` the child (the worker) instead of the
/// supervisor.
pub const ROLE_ENV: &str = "WORKER_AGENT_ROLE";
/// The value of [`ROLE_ENV`] the supervisor gives its child.
pub const ROLE_CHILD: &str = "child";
/// Environment variable carrying the install path the supervisor resolved to its child.
pub const INSTALL_PATH_ENV: &str = "WORKER_AGENT_INSTALL_PATH";
/// Environment variable naming the version a child runs in probation (unset otherwise).
pub const PROBATION_ENV: &str = "WORKER_AGENT_PROBATION";

/// True when the supervisor started this process to hold it in probation ([`PROBATION_ENV`]).
pub fn in_probation() -> bool {
    std::env::var_os(PROBATION_ENV).is_some()
}

/// True when this process is the child (the worker), not the supervisor.
pub fn is_child() -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|role| role == ROLE_CHILD)
}

/// State-directory file of the update staged for probation ([`Pending`]).
pub const PENDING_FILE: &str = "pending.json";
/// State-directory file of a child's readiness announcement ([`Ready`]).
pub const READY_FILE: &str = "ready.json";
/// State-directory subdirectory of the queued outcomes ([`OutcomeRecord`]).
pub const OUTBOX_DIR: &str = "outbox";

/// The directory holding the install path (where updates are downloaded and staged, so the
/// final rename never crosses a file system).
pub fn install_dir(install: &Path) -> &Path {
    install.parent().unwrap_or(Path::new("/"))
}

fn install_name(install: &Path) -> String {
    install
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where a commit keeps the binary it replaces: `<install>.previous`.
pub fn previous_path(install: &Path) -> PathBuf {
    install_dir(install).join(format!("{}.previous", install_name(install)))
}

/// The temporary name under which a commit links the running binary before renaming it to
/// [`previous_path`].
pub fn previous_tmp_path(install: &Path) -> PathBuf {
    install_dir(install).join(format!(".{}.previous.tmp", install_name(install)))
}

fn artifact_short(sha256: &str) -> &str {
    sha256.get(..16).unwrap_or(sha256)
}

/// The partial download of the artifact with this SHA-256 (kept across attempts to resume it).
pub fn part_path(install: &Path, sha256: &str) -> PathBuf {
    install_dir(install).join(format!(".worker-agent-{}.part", artifact_short(sha256)))
}

/// Where a signed patch is applied to the installed binary (a delta update): unverified bytes,
/// never executed, renamed to [`staged_path`] only once they hash to the signed artifact.
pub fn patched_path(install: &Path, sha256: &str) -> PathBuf {
    install_dir(install).join(format!(".worker-agent-{}.patching", artifact_short(sha256)))
}

/// Deletes what a `kill -9` during a delta apply leaves: `.worker-agent-*.patching` files in
/// the install directory (unverified, never staged or run). Called by the supervisor holding the
/// update lock before its worker starts, so no apply is under way; returns how many it removed.
pub fn remove_stale_patching(install: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(install_dir(install)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".worker-agent-")
            && name.ends_with(".patching")
            && std::fs::remove_file(entry.path()).is_ok()
        {
            tracing::info!(path = %entry.path().display(), "removed a stale patched file left by an interrupted delta update");
            removed += 1;
        }
    }
    removed
}

/// The verified download of `version`, waiting for probation.
pub fn staged_path(install: &Path, version: &Version, sha256: &str) -> PathBuf {
    install_dir(install).join(format!(
        ".worker-agent-{version}-{}.staged",
        artifact_short(sha256)
    ))
}

/// A verified update staged in the install directory, waiting for (or in) probation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// One id per attempt, in logs and reports on both sides.
    pub correlation_id: String,
    /// Channel followed.
    pub channel: String,
    /// Version running when the attempt started.
    pub from_version: Version,
    /// Version being installed.
    pub to_version: Version,
    /// The verified file in the install directory.
    pub staged_path: PathBuf,
    /// The install path it replaces once probation passes.
    pub install_path: PathBuf,
    /// The signed release (the supervisor re-verifies the staged file against it).
    pub release: Signed<Release>,
    /// Platform of the artifact.
    pub platform: String,
    /// A downgrade allowed by a rollback directive.
    pub is_rollback: bool,
    /// When the attempt started (Unix milliseconds).
    pub started_at_ms: i64,
    /// Probations started for this attempt (an interrupted probation is retried a few times).
    pub probation_attempts: u32,
}

/// "I am ready", written by a child once its task API is bound (and, in probation, its
/// self-check ran).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The child's pid.
    pub pid: u32,
    /// The version it runs.
    pub version: String,
    /// Its metrics address.
    pub metrics: String,
    /// Why its probation self-check failed (`esup_runner::self_check`); absent when it passed
    /// or did not run. A worker that writes this exits: the supervisor rolls it back with
    /// `self_check_failed` (an older supervisor, which ignores the field, sees it exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_check_failed: Option<String>,
}

/// How an update attempt ended (the `outcome` of a report, serialised as its label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Probation passed; the install path holds the new version.
    Success,
    /// Refused or failed before probation (nothing was installed).
    Failure,
    /// Probation failed; the previous version runs again and the new one is quarantined.
    RolledBack,
    /// Given up for now: tasks were still running after the maximum deferral.
    Deferred,
}

impl Outcome {
    /// The label, as on disk and in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::RolledBack => "rolled_back",
            Outcome::Deferred => "deferred",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome queued in the outbox (by the supervisor, or by the worker itself), for the worker
/// to count and report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// Correlation id of the attempt.
    pub correlation_id: String,
    /// Channel.
    pub channel: String,
    /// Version before.
    pub from_version: String,
    /// Version attempted.
    pub to_version: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Reason label (a [`crate::error::FailureReason`]; empty on success).
    pub reason: String,
    /// Duration of the attempt.
    pub duration_ms: u64,
    /// When it was decided.
    pub at: String,
}

/// Adds `version` to the stored trust state's quarantine: it is not installed again until a
/// newer release comes. Called by the supervisor when it rolls a version back (before any
/// worker starts again) and by the worker when it counts a rolled-back outcome (so an outcome
/// queued by another supervisor version is honoured too); adding twice is harmless.
pub fn quarantine(state: &StateDir, version: &Version) {
    let path = state.path().join(crate::state::TRUST_FILE);
    let result = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<TrustState>(&bytes).ok())
        .map(|mut trust| {
            trust.quarantined.insert(version.clone());
            state.save_trust(&trust)
        });
    match result {
        Some(Ok(())) => {
            tracing::warn!(%version, "version quarantined: it will not be retried until a newer release")
        }
        Some(Err(error)) => tracing::error!(%error, %version, "could not record the quarantine"),
        None => tracing::error!(%version, "trust state unreadable; quarantine not recorded"),
    }
}

/// Sends queued outcomes to the server, counts them, and applies quarantine for rolled-back
/// versions. Safe to call from any task: outcome files are removed only once reported.
pub async fn flush_outbox(
    state: &StateDir,
    client: &UpdateClient,
    telemetry: &Telemetry,
    worker_id: &str,
) {
    let outcomes = match state.outcomes() {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, "outbox unreadable");
            return;
        }
    };
    for (path, outcome) in outcomes {
        let counted = crate::state::counted_mark(&path);
        if !counted.exists() {
            match outcome.outcome {
                Outcome::Success => telemetry.success(),
                Outcome::RolledBack => {
                    telemetry.rollback(&outcome.reason);
                    if let Ok(version) = outcome.to_version.parse::<Version>() {
                        quarantine(state, &version);
                    }
                }
                Outcome::Failure => telemetry.failure(&outcome.reason),
                Outcome::Deferred => telemetry.deferred(),
            }
            if matches!(outcome.outcome, Outcome::Success | Outcome::RolledBack) {
                // The whole attempt, download to verdict, probation included.
                #[allow(clippy::cast_precision_loss)]
                telemetry
                    .durations
                    .with_label_values(&["total"])
                    .observe(outcome.duration_ms as f64 / 1000.0);
            }
            let _ = std::fs::write(&counted, b"");
        }
        match client.report(worker_id, &outcome).await {
            Ok(()) => {
                tracing::info!(correlation_id = %outcome.correlation_id, outcome = %outcome.outcome, reason = %outcome.reason, to_version = %outcome.to_version, "update outcome reported");
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(&counted);
            }
            Err(error) => {
                tracing::warn!(correlation_id = %outcome.correlation_id, %error, "could not report the outcome yet; will retry");
                return;
            }
        }
    }
}

/// How often a worker in probation looks whether it was committed.
const COMMIT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Waits until the supervisor has judged `version`, the version this worker runs in probation:
/// `pending.json` no longer names it (a commit clears it; a rollback stops this worker). A
/// worker in probation must not update itself: its exit with [`EXIT_STAGED`] would be taken
/// for a death in probation and roll back a good version, and its staged update would replace
/// the record being judged. So the update loop starts only once this returns `true`; `false`
/// when `stop` is cancelled first.
pub async fn wait_for_commit(
    state: &StateDir,
    version: &Version,
    stop: &CancellationToken,
) -> bool {
    let judged = || !matches!(state.pending(), Ok(Some(pending)) if pending.to_version == *version);
    if judged() {
        return true;
    }
    tracing::info!(%version, "in probation: no update checks until the supervisor commits this version");
    loop {
        tokio::select! {
            () = tokio::time::sleep(COMMIT_POLL_INTERVAL) => {}
            () = stop.cancelled() => return false,
        }
        if judged() {
            tracing::info!(%version, "committed: update checks start");
            return true;
        }
    }
}

/// How often the outbox flusher looks for outcomes.
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// The worker's outbox flusher: outcomes decided by the supervisor are counted and reported
/// promptly, whatever the update loop is doing (e.g. sitting in a long poll). Flushes once at
/// once, then every 500 ms (`FLUSH_INTERVAL`) until `stop` is cancelled.
pub fn spawn_outbox_flusher(
    state: StateDir,
    client: UpdateClient,
    telemetry: std::sync::Arc<Telemetry>,
    worker_id: String,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            flush_outbox(&state, &client, &telemetry, &worker_id).await;
            tokio::select! {
                () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                () = stop.cancelled() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureReason;

    #[test]
    fn outcomes_keep_their_on_disk_labels() {
        for (outcome, label) in [
            (Outcome::Success, "success"),
            (Outcome::Failure, "failure"),
            (Outcome::RolledBack, "rolled_back"),
            (Outcome::Deferred, "deferred"),
        ] {
            assert_eq!(outcome.as_str(), label);
            let json = serde_json::to_string(&outcome).expect("serialise");
            assert_eq!(json, format!("\"{label}\""));
            assert_eq!(
                serde_json::from_str::<Outcome>(&json).expect("parse"),
                outcome
            );
        }
    }

    #[test]
    fn failure_reasons_keep_their_labels() {
        for (reason, label) in [
            (FailureReason::Http(404), "http_404"),
            (FailureReason::TooSlow, "too_slow"),
            (FailureReason::DiedInProbation, "died_in_probation"),
            (FailureReason::SelfCheckFailed, "self_check_failed"),
            (FailureReason::ProbationInterrupted, "probation_interrupted"),
            (
                FailureReason::Verification(manifests::Reason::BadSignature),
                "bad_signature",
            ),
        ] {
            assert_eq!(reason.label(), label);
        }
    }

    #[test]
    fn update_files_sit_next_to_the_install_path() {
        let install = Path::new("/opt/worker/bin/worker-agent");
        let version: Version = "2.1.0".parse().expect("version");
        let sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            previous_path(install),
            Path::new("/opt/worker/bin/worker-agent.previous")
        );
        assert_eq!(
            previous_tmp_path(install),
            Path::new("/opt/worker/bin/.worker-agent.previous.tmp")
        );
        assert_eq!(
            part_path(install, sha),
            Path::new("/opt/worker/bin/.worker-agent-0123456789abcdef.part")
        );
        assert_eq!(
            staged_path(install, &version, sha),
            Path::new("/opt/worker/bin/.worker-agent-2.1.0-0123456789abcdef.staged")
        );
    }

    #[test]
    fn quarantine_without_a_stored_trust_state_creates_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::open(dir.path()).expect("state");
        let version: Version = "3.0.0".parse().expect("version");
        // No trust state yet (the worker has not loaded its root): nothing to add to.
        quarantine(&state, &version);
        assert!(!dir.path().join(crate::state::TRUST_FILE).exists());
    }
}
