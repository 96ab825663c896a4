//! The server's persistent state behind a small trait, with two implementations: the embedded
//! SQLite one ([`crate::sqlite::SqliteStore`], the default) and PostgreSQL
//! ([`crate::postgres::PostgresStore`], `--database-url`).
//!
//! The trait is synchronous: the server calls it from `spawn_blocking`. Every method that
//! changes state returns only once the change is durable.

use std::path::PathBuf;

pub mod enrolment;
#[cfg(test)]
pub mod memory;

pub use enrolment::{CredentialRecord, EnrolStore, EnrollTokenRecord};

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database {path}: {source}", path = path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The driver's error.
        source: rusqlite::Error,
    },
    /// A migration failed.
    #[error("database {path}: migration {version} failed: {source}", path = path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The migration's version.
        version: usize,
        /// The driver's error.
        source: rusqlite::Error,
    },
    /// PostgreSQL (`--database-url`) refused or failed an operation, or could not be reached.
    #[error("database {url}: {source}")]
    Postgres {
        /// The database URL, without its password.
        url: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// A PostgreSQL migration (`migrations/postgres/`) failed.
    #[error("database {url}: migration {version} failed: {source}")]
    PostgresMigration {
        /// The database URL, without its password.
        url: String,
        /// The migration's version.
        version: usize,
        /// The driver's error.
        source: postgres::Error,
    },
    /// A channel change was not stored because the statement history already holds a serial
    /// at or above its own: another replica changed the channel meanwhile (nothing was written).
    #[error("channel {channel}: serial {serial} not stored, the statement history already holds serial {stored}: the channel was changed meanwhile (by another replica?); nothing was written")]
    SerialConflict {
        /// The channel.
        channel: String,
        /// The serial that was not stored.
        serial: u64,
        /// The highest serial stored.
        stored: u64,
    },
    /// The database is newer than this server.
    #[error("database {path} is at schema version {found}, newer than this server ({supported}); upgrade the server", path = path.display())]
    TooNew {
        /// The database file (or the PostgreSQL URL, without its password).
        path: PathBuf,
        /// Its schema version.
        found: usize,
        /// The newest this build knows.
        supported: usize,
    },
}

/// Result of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored release manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// Semantic version.
    pub version: String,
    /// Hex SHA-256 of the canonical `signed` part.
    pub manifest_sha256: String,
    /// The signed document as published.
    pub body: Vec<u8>,
    /// Unix seconds.
    pub published_at: i64,
}

/// Outcome of storing a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRelease {
    /// Stored now.
    Inserted,
    /// The same document was already stored.
    Identical,
    /// The version exists with another manifest.
    Conflict,
    /// The same manifest with other signatures (re-signed after a release-key rotation): the
    /// stored document was replaced by this one, with an audit entry.
    Resigned,
}

/// A channel's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// Channel name.
    pub channel: String,
    /// The signed statement currently served.
    pub statement: Vec<u8>,
    /// A signed rollback directive attached to the channel.
    pub rollback: Option<Vec<u8>>,
    /// Why the channel is halted (empty when it is not).
    pub halt_reason: String,
    /// The channel's rollout plan and its progress (JSON, `state::waves::RolloutPlan`), kept in
    /// the same row as the statement so that opening a wave and signing it are one write.
    pub plan: Option<String>,
}

/// A worker of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Stable id.
    pub worker_id: String,
    /// Running version.
    pub version: String,
    /// Target triple.
    pub platform: String,
    /// Channel followed.
    pub channel: String,
    /// Host name (from registration).
    pub hostname: String,
    /// Task types, as JSON array text (from registration).
    pub task_types: String,
    /// Unix seconds.
    pub last_seen: i64,
}

/// One update attempt reported by an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    /// Reporting worker.
    pub worker_id: String,
    /// The channel it follows.
    pub channel: String,
    /// Correlates agent and server logs of one attempt.
    pub correlation_id: String,
    /// Version before.
    pub from_version: String,
    /// Version attempted.
    pub to_version: String,
    /// `success`, `failure`, `rolled_back` or `deferred`.
    pub outcome: String,
    /// Stable reason label (empty on success).
    pub reason: String,
    /// How long the attempt took.
    pub duration_ms: i64,
    /// When the agent says it happened (Unix seconds).
    pub at: i64,
    /// When the server received it (Unix seconds).
    pub received_at: i64,
    /// Whether it counts towards auto-halt and the stable gate (`state::enrolment`: a report
    /// of an enrolled worker counts only when it downloaded the release).
    pub counted: bool,
}

/// An admin action in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: i64,
    /// `publish`, `promote`, `halt`, `resume`, `rollback`, `auto_halt`, `root`, `resign`,
    /// `channel_create`, `channel_delete`, `worker_forget`, `worker_enroll`,
    /// `enroll_token_create`, `enroll_token_revoke`, or
    /// `report` (an update attempt, when listing).
    pub kind: String,
    /// Token name of the admin, `auto-halt`, `server`, or the worker id for reports.
    pub actor: String,
    /// Channel concerned.
    pub channel: String,
    /// Version concerned.
    pub version: String,
    /// Free text.
    pub detail: String,
}

/// What [`Store::save_channel`] writes for one channel change, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct ChannelWrite<'a> {
    /// The channel's new state (replaces the stored one).
    pub record: &'a ChannelRecord,
    /// Serial of `record.statement`, for the statement history (signed at `audit.at`).
    pub serial: u64,
    /// The audit entry of the change; its time is the change's time.
    pub audit: &'a AuditRecord,
    /// The promotion the change makes, if any: (version, percent).
    pub promotion: Option<(&'a str, u8)>,
}

/// Which reports [`Store::release_outcomes`] counts.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeQuery<'a> {
    /// Channel the reports are about.
    pub channel: &'a str,
    /// Version the reports attempted (`to_version`).
    pub version: &'a str,
    /// Failure reasons that are the release's fault (`died_in_probation`, ...); a failure with
    /// any other reason (a mirror's bad bytes, a full disk, a refusal) is counted neither as
    /// failed nor as tried.
    pub defects: &'a [&'a str],
}

/// Distinct workers per outcome for one release on one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Workers that reported `failure` or `rolled_back` (release defects only).
    pub failed: u64,
    /// Workers that reported `success`.
    pub succeeded: u64,
    /// Workers that reported any of `success`, `failure`, `rolled_back`.
    pub tried: u64,
}

/// Failures in a time window, grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    /// Channel.
    pub channel: String,
    /// Version attempted.
    pub version: String,
    /// `failure` or `rolled_back`.
    pub outcome: String,
    /// Reason label.
    pub reason: String,
    /// Reports.
    pub count: u64,
}

/// Which entries [`Store::audit`] lists
/// (`GET /api/admin/audit?limit=&channel=&kind=&actor=&since=&until=`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At most this many, newest first.
    pub limit: usize,
    /// Only this channel's entries.
    pub channel: Option<String>,
    /// Only entries of this kind (`promote`, `report`, `worker_forget`, ...).
    pub kind: Option<String>,
    /// Only entries at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only entries by this actor (an admin token's name, `auto-halt`, `server`, or the worker
    /// id of a report).
    pub actor: Option<String>,
    /// Only entries at or before this time (Unix seconds).
    pub until: Option<i64>,
}

impl AuditFilter {
    /// The newest `limit` entries, unfiltered.
    pub fn newest(limit: usize) -> Self {
        AuditFilter {
            limit,
            ..AuditFilter::default()
        }
    }

    /// `entry` passes the channel, kind, actor and time filters.
    pub fn admits(&self, entry: &AuditRecord) -> bool {
        self.channel.as_ref().is_none_or(|c| *c == entry.channel)
            && self.kind.as_ref().is_none_or(|k| *k == entry.kind)
            && self.actor.as_ref().is_none_or(|a| *a == entry.actor)
            && self.since.is_none_or(|since| entry.at >= since)
            && self.until.is_none_or(|until| entry.at <= until)
    }
}

/// The server's persistent state (with the enrolment tables of [`EnrolStore`]).
pub trait Store: EnrolStore + Send + Sync + 'static {
    /// Every stored root document, by ascending version.
    fn roots(&self) -> StoreResult<Vec<(u64, Vec<u8>)>>;
    /// Stores root `version` (the caller verified the rotation), with an audit entry.
    fn add_root(&self, version: u64, body: &[u8], audit: &AuditRecord) -> StoreResult<()>;

    /// Stores a release unless a different one has the same version; audits an insertion, and
    /// replaces (and audits) the stored document when the same manifest comes with other
    /// signatures.
    fn put_release(&self, release: &ReleaseRecord, audit: &AuditRecord) -> StoreResult<PutRelease>;
    /// Every stored release.
    fn releases(&self) -> StoreResult<Vec<ReleaseRecord>>;

    /// Records an artifact stored on disk.
    fn add_artifact(&self, sha256: &str, size: u64, at: i64) -> StoreResult<()>;
    /// Every stored artifact: (sha256, size).
    fn artifacts(&self) -> StoreResult<Vec<(String, u64)>>;

    /// Every channel's current state.
    fn channels(&self) -> StoreResult<Vec<ChannelRecord>>;
    /// Replaces a channel's state, appends its statement to the history (serial, signed_at) and,
    /// in the same transaction, the audit entry and the promotion (version, percent) if any.
    /// Refused with [`StoreError::SerialConflict`] (nothing written) unless `change.serial` is
    /// above every serial stored for the channel: replicas racing never store one serial twice.
    fn save_channel(&self, change: ChannelWrite<'_>) -> StoreResult<()>;
    /// Every created channel, by name (migration 2 created `canary`, `stable` and every channel
    /// already stored).
    fn channel_names(&self) -> StoreResult<Vec<String>>;
    /// Creates channel `name`, with an audit entry; false (and nothing written) when it exists.
    fn create_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<bool>;
    /// Deletes channel `name` and its current state, with an audit entry. The statement history
    /// stays, so a channel created again under the same name keeps growing its serials.
    fn delete_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<()>;
    /// The highest serial ever signed for `channel` (the statement history), if any: the next
    /// statement's serial is one more, whatever the server remembers or was restarted with.
    fn max_serial(&self, channel: &str) -> StoreResult<Option<u64>>;
    /// When `version` was first promoted on `channel` (Unix seconds).
    fn first_promotion(&self, channel: &str, version: &str) -> StoreResult<Option<i64>>;

    /// Inserts or updates a worker.
    fn upsert_worker(&self, worker: &WorkerRecord) -> StoreResult<()>;
    /// Every known worker.
    fn workers(&self) -> StoreResult<Vec<WorkerRecord>>;
    /// The workers that follow `channel`: what a rollout plan counts when replicas share the
    /// database (each replica's memory knows only the workers that poll it).
    fn channel_workers(&self, channel: &str) -> StoreResult<Vec<WorkerRecord>>;

    /// Stores an update report.
    fn add_report(&self, report: &ReportRecord) -> StoreResult<()>;
    /// Distinct workers per outcome for `query.version` on `query.channel`, of the reports that
    /// count ([`ReportRecord::counted`]); only failures whose reason is in `query.defects`
    /// (the release's fault) count as failed and as tried.
    fn release_outcomes(&self, query: OutcomeQuery<'_>) -> StoreResult<OutcomeCounts>;
    /// The newest `limit` reports about `channel` (of every outcome, counted or not), oldest
    /// first by the time the server received them: the console's rollout progress
    /// (`GET /api/admin/channels/{channel}/history`) replays them.
    fn channel_reports(&self, channel: &str, limit: usize) -> StoreResult<Vec<ReportRecord>>;

    /// The distinct workers that tried `query.version` on `query.channel` (counted reports of
    /// `success`, or of a failure that is a release defect): the rollout plan no longer counts
    /// them in flight.
    fn tried_workers(&self, query: OutcomeQuery<'_>) -> StoreResult<Vec<String>>;
    /// `failure` and `rolled_back` reports received since `since`, grouped.
    fn failures_since(&self, since: i64) -> StoreResult<Vec<FailureGroup>>;

    /// Retention: deletes the reports received before `reports_received_before` (Unix seconds)
    /// and the workers `forget_workers`, in one transaction; returns how many reports went.
    fn prune(&self, reports_received_before: i64, forget_workers: &[String]) -> StoreResult<u64>;

    /// Appends to the audit trail.
    fn add_audit(&self, audit: &AuditRecord) -> StoreResult<()>;
    /// The newest `filter.limit` audit entries and reports that pass `filter`, merged, newest
    /// first.
    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes `worker_id` from the inventory (a decommissioned worker), with an audit entry, in
    /// one transaction; false (nothing written) when it is not stored. Its reports stay.
    fn forget_worker(&self, worker_id: &str, audit: &AuditRecord) -> StoreResult<bool>;
}
