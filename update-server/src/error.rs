//! Errors of the server's operations ([`crate::state`]): each variant carries the channel,
//! version, worker or artifact that failed, a stable reason label ([`Error::reason`]) and a
//! kind ([`ErrorKind`]). Only [`crate::http`] turns them into HTTP statuses and the
//! `{"error": ..., "reason": ...}` body; clients and dashboards key on the reason labels, so they
//! never change.

use manifests::Version;

use crate::store::StoreError;

/// The outcomes a report may carry.
pub const REPORT_OUTCOMES: [&str; 4] = ["success", "failure", "rolled_back", "deferred"];

/// What kind of failure an [`Error`] is, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is invalid (a missing field, a bad version, a bad name).
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// The request is valid but the current state refuses it (soak gate, conflicting release).
    Refused,
    /// A signed document was rejected (bad signature, expired, malformed).
    Rejected,
    /// The server failed (storage, a task, a stored document that no longer verifies).
    Internal,
}

/// A failed operation of the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A version field is not a semantic version.
    #[error("{field} {text:?} is not a semantic version: {source}")]
    InvalidVersion {
        /// The field (`version`, `current_version`, ...).
        field: &'static str,
        /// What was sent.
        text: String,
        /// The parser's complaint.
        source: semver::Error,
    },
    /// A required field is empty.
    #[error("{field} is required")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A channel name outside `[a-z0-9_-]{1,64}`.
    #[error("channel name {channel:?}: use 1-64 of a-z, 0-9, '-', '_'")]
    InvalidChannelName {
        /// The name sent.
        channel: String,
    },
    /// A report's outcome is none of [`REPORT_OUTCOMES`].
    #[error("outcome {outcome:?} is not one of {}", REPORT_OUTCOMES.join(", "))]
    UnknownOutcome {
        /// The reporting worker.
        worker_id: String,
        /// The outcome sent.
        outcome: String,
    },
    /// A report's `at` is not an RFC 3339 time.
    #[error("at: {source}")]
    InvalidReportTime {
        /// The reporting worker.
        worker_id: String,
        /// The parser's complaint.
        source: Box<manifests::Error>,
    },
    /// A report names no channel and its worker never registered.
    #[error("worker {worker_id} never registered and the report names no channel")]
    UnknownWorkerChannel {
        /// The reporting worker.
        worker_id: String,
    },
    /// A channel that was never created (or was deleted), named by an admin or a worker.
    #[error("no channel {channel:?} on this server: `worker-release channel list` shows the channels, `worker-release channel create {channel}` creates one")]
    UnknownChannel {
        /// The channel asked for.
        channel: String,
    },
    /// `worker forget` of a worker the inventory does not hold.
    #[error("no worker {worker_id:?} in the inventory (`worker-release status` shows the fleet)")]
    UnknownWorker {
        /// The worker asked for.
        worker_id: String,
    },
    /// `channel create` of a channel that exists.
    #[error("channel {channel:?} already exists")]
    ChannelExists {
        /// The channel.
        channel: String,
    },
    /// `channel delete` of a channel workers still follow, without `force`.
    #[error("{workers} worker(s) follow channel {channel:?}: move them to another channel first, or delete with --force (they will be answered 404 unknown_channel)")]
    ChannelFollowed {
        /// The channel.
        channel: String,
        /// How many workers of the inventory follow it.
        workers: usize,
    },
    /// A promotion to stable that does not say its percentage.
    #[error("promoting {version} to {channel} needs an explicit percent (e.g. 10, or 100 for the whole channel)")]
    PercentRequired {
        /// The channel.
        channel: String,
        /// The version being promoted.
        version: String,
    },
    /// A promotion above 100 %.
    #[error("percent {percent} is above 100")]
    PercentAbove100 {
        /// The channel.
        channel: String,
        /// The percentage sent.
        percent: u8,
    },
    /// A rollout plan (`--waves`, `--max-in-flight`, `--window`, `--first-wave`) that cannot be
    /// followed.
    #[error("invalid rollout plan for {channel}: {detail}")]
    InvalidPlan {
        /// The channel.
        channel: String,
        /// What is wrong, naming the part.
        detail: String,
    },
    /// The soak gate overridden without a reason for the audit trail.
    #[error("--override needs a --reason, written to the audit trail")]
    OverrideWithoutReason {
        /// The channel.
        channel: String,
        /// The version being promoted.
        version: String,
    },
    /// A halt without a reason.
    #[error("halting needs a reason")]
    HaltWithoutReason {
        /// The channel.
        channel: String,
    },
    /// A resume without a reason (the audit trail says why a halted rollout went on).
    #[error("resuming channel {channel:?} needs a reason, written to the audit trail")]
    ResumeWithoutReason {
        /// The channel.
        channel: String,
    },
    /// A root of a version this server already trusts, with other content.
    #[error("root version {version} is already published with other content: a root version is never replaced (rotate to version {next} instead)")]
    RootConflict {
        /// The version offered.
        version: u64,
        /// The version a rotation must have.
        next: u64,
    },
    /// A rollback directive that is not a JSON document.
    #[error("{source}")]
    InvalidDirective {
        /// The channel.
        channel: String,
        /// The serialiser's complaint.
        source: serde_json::Error,
    },
    /// Halt or resume of a channel nothing was promoted on.
    #[error("channel {channel:?} has nothing to {action}")]
    NothingToChange {
        /// The channel.
        channel: String,
        /// `halt` or `resume`.
        action: &'static str,
    },
    /// Resume of a channel that is not halted: resuming it would re-sign a statement for
    /// nothing, and usually means the wrong channel was named.
    #[error("channel {channel:?} is not halted: there is nothing to resume")]
    NotHalted {
        /// The channel.
        channel: String,
    },
    /// A statement change on a channel without a release.
    #[error("channel {channel:?} has no release yet")]
    NoRelease {
        /// The channel.
        channel: String,
    },
    /// A release that is not published (or no longer verifies).
    #[error("release {version} is not published")]
    ReleaseNotPublished {
        /// The version asked for.
        version: Version,
    },
    /// A version published again with another manifest.
    #[error("release {version} is already published with another manifest; publish a new version")]
    ReleaseConflict {
        /// The version.
        version: String,
    },
    /// A release whose artifacts are not all uploaded.
    #[error("release {version} is missing artifact(s) {}: upload them first", missing.join(", "))]
    IncompleteRelease {
        /// The version.
        version: Version,
        /// SHA-256 of each missing artifact.
        missing: Vec<String>,
    },
    /// Promotion to stable of a version never promoted on canary.
    #[error("{version} has never been on canary; promote it there first (or --override --reason)")]
    NeverOnCanary {
        /// The version.
        version: Version,
    },
    /// Promotion to stable before the soak time passed.
    #[error("{version} has been on canary for {soaked} s, the soak time is {soak} s ({} s to go; or --override --reason)", soak - soaked)]
    SoakTooShort {
        /// The version.
        version: Version,
        /// Seconds on canary so far.
        soaked: u64,
        /// The soak time in seconds.
        soak: u64,
    },
    /// Promotion to stable before any canary worker installed the version.
    #[error("no canary worker has installed {version} successfully yet (or --override --reason)")]
    NoCanarySuccess {
        /// The version.
        version: Version,
    },
    /// Promotion to stable with too many canary failures.
    #[error("{failed} of {tried} canary workers failed or rolled back {version} ({:.0}% > {:.0}%; or --override --reason)", rate * 100.0, max_rate * 100.0)]
    CanaryFailureRate {
        /// The version.
        version: Version,
        /// Canary workers that failed or rolled back.
        failed: u64,
        /// Canary workers that tried.
        tried: u64,
        /// `failed / tried`.
        rate: f64,
        /// `--promote-max-failure-rate`.
        max_rate: f64,
    },
    /// A root rotation that drops this server's channel key.
    #[error("root version {version} does not authorise this server's channel key {keyid}: restart the server with --root (the new root) and --channel-key (a key of its channel role) instead")]
    RootWithoutChannelKey {
        /// The offered root version.
        version: u64,
        /// This server's channel key id.
        keyid: String,
    },
    /// A release whose signatures the current root does not accept (signed by a release key
    /// a rotation dropped): it must be re-signed and published again before a channel offers it.
    #[error("{detail}")]
    ReleaseUntrusted {
        /// The release.
        version: Version,
        /// What is wrong and what to do, with the root version.
        detail: String,
    },
    /// A root rotation that weakens a role (fewer keys, a lower threshold) without
    /// `allow_weaker`.
    #[error("root version {version} weakens trust ({changes}); publish it with --allow-weaker (`worker-release publish-root --allow-weaker`, or `update-server --allow-weaker` at start) if that is intended")]
    WeakerRoot {
        /// The offered root version.
        version: u64,
        /// What it weakens, in words.
        changes: String,
    },
    /// A root naming this server's online channel key in an offline role (root or release).
    #[error("key {keyid} is also a key of the {role} role of root version {version}: the online update server would hold an offline key (it could sign {role} documents); give the channel role a key of its own")]
    ChannelKeyInOfflineRole {
        /// The root version.
        version: u64,
        /// `root` or `release`.
        role: &'static str,
        /// The channel key's id.
        keyid: String,
    },
    /// A release manifest without artifacts.
    #[error("the release lists no artifact")]
    ReleaseWithoutArtifacts {
        /// The version.
        version: Version,
    },
    /// A signed document was rejected (or could not be signed). Boxed: it is large, and every
    /// operation's result carries this enum.
    #[error(transparent)]
    Manifest(Box<manifests::Error>),
    /// A stored statement points at a release that is not stored (or does not verify).
    #[error("release {version} of the statement is not stored (or does not verify)")]
    StatementReleaseMissing {
        /// The channel.
        channel: String,
        /// The release version the statement names.
        version: Version,
    },
    /// A stored statement does not pin its stored release.
    #[error("the stored statement of channel {channel} does not pin its stored release")]
    StatementMismatch {
        /// The channel.
        channel: String,
    },
    /// A channel written a moment ago is not served.
    #[error("channel vanished")]
    ChannelVanished {
        /// The channel.
        channel: String,
    },
    /// Another replica changed the channel while this one was changing it: nothing was changed.
    #[error("channel {channel} was changed by another replica at the same time (serial {serial} is already stored); nothing was changed: look at the channel and retry")]
    SerialConflict {
        /// The channel.
        channel: String,
        /// The highest serial stored.
        serial: u64,
    },
    /// The store failed.
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
    /// A blocking task (storage, file system) panicked or was cancelled.
    #[error("{context}: {source}")]
    Task {
        /// What the task did.
        context: &'static str,
        /// Why it did not finish.
        source: tokio::task::JoinError,
    },
    /// Moving an uploaded artifact into place failed.
    #[error("storing artifact {sha256}: {source}")]
    ArtifactIo {
        /// The artifact.
        sha256: String,
        /// The file system's error.
        source: std::io::Error,
    },
}

impl From<manifests::Error> for Error {
    fn from(error: manifests::Error) -> Self {
        Error::Manifest(Box::new(error))
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidVersion { .. }
            | Error::MissingField { .. }
            | Error::InvalidChannelName { .. }
            | Error::UnknownOutcome { .. }
            | Error::InvalidReportTime { .. }
            | Error::UnknownWorkerChannel { .. }
            | Error::PercentAbove100 { .. }
            | Error::InvalidPlan { .. }
            | Error::PercentRequired { .. }
            | Error::OverrideWithoutReason { .. }
            | Error::HaltWithoutReason { .. }
            | Error::ResumeWithoutReason { .. }
            | Error::InvalidDirective { .. } => ErrorKind::Invalid,
            Error::NothingToChange { .. }
            | Error::UnknownChannel { .. }
            | Error::UnknownWorker { .. }
            | Error::NoRelease { .. }
            | Error::ReleaseNotPublished { .. } => ErrorKind::NotFound,
            Error::ReleaseConflict { .. }
            | Error::ChannelExists { .. }
            | Error::ChannelFollowed { .. }
            | Error::IncompleteRelease { .. }
            | Error::NeverOnCanary { .. }
            | Error::SoakTooShort { .. }
            | Error::NoCanarySuccess { .. }
            | Error::CanaryFailureRate { .. }
            | Error::RootWithoutChannelKey { .. }
            | Error::ReleaseUntrusted { .. }
            | Error::WeakerRoot { .. }
            | Error::NotHalted { .. }
            | Error::RootConflict { .. }
            | Error::SerialConflict { .. }
            | Error::ChannelKeyInOfflineRole { .. } => ErrorKind::Refused,
            Error::ReleaseWithoutArtifacts { .. } => ErrorKind::Rejected,
            Error::Manifest(error) => match error.reason() {
                manifests::Reason::Io => ErrorKind::Internal,
                _ => ErrorKind::Rejected,
            },
            Error::StatementReleaseMissing { .. }
            | Error::StatementMismatch { .. }
            | Error::ChannelVanished { .. }
            | Error::Store(_)
            | Error::Task { .. }
            | Error::ArtifactIo { .. } => ErrorKind::Internal,
        }
    }

    /// The stable reason label clients see.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ReleaseConflict { .. } => "conflict",
            Error::IncompleteRelease { .. } => "incomplete_release",
            Error::UnknownChannel { .. } => "unknown_channel",
            Error::UnknownWorker { .. } => "unknown_worker",
            Error::ChannelExists { .. } => "channel_exists",
            Error::ChannelFollowed { .. } => "channel_in_use",
            Error::PercentRequired { .. } => "percent_required",
            Error::InvalidPlan { .. } => "invalid_plan",
            Error::NeverOnCanary { .. }
            | Error::SoakTooShort { .. }
            | Error::NoCanarySuccess { .. } => "soak",
            Error::CanaryFailureRate { .. } => "failure_rate",
            Error::RootWithoutChannelKey { .. } | Error::ChannelKeyInOfflineRole { .. } => {
                "channel_key"
            }
            Error::ReleaseUntrusted { .. } => "untrusted_release",
            Error::WeakerRoot { .. } => "weaker_root",
            Error::NotHalted { .. } => "not_halted",
            Error::ResumeWithoutReason { .. } => "missing_reason",
            Error::RootConflict { .. } => "root_conflict",
            Error::SerialConflict { .. } => "serial_conflict",
            Error::ReleaseWithoutArtifacts { .. } => "malformed",
            Error::Manifest(error) => error.reason().as_str(),
            _ => match self.kind() {
                ErrorKind::Invalid => "bad_request",
                ErrorKind::NotFound => "not_found",
                ErrorKind::Refused | ErrorKind::Rejected | ErrorKind::Internal => "internal",
            },
        }
    }
}

/// Result of the server's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
