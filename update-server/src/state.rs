//! The server's state and operations: trust (root chain), releases and artifacts, channels and
//! their signed statements, the fleet inventory, reports and auto-halt.
//!
//! Reads are served from memory (the `/latest` body of each channel is built once per change,
//! with its ETag); every change is written to the [`Store`] before it becomes visible.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use manifests::{
    ChannelStatement, DocType, ExpirationEnforcement, PrivateKey, Release, ReleasePointer,
    RoleName, Rollback, Rollout, Root, Signed, Timestamp, Version,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{
    AuditRecord, ChannelRecord, PutRelease, ReleaseRecord, ReportRecord, Store, StoreResult,
    WorkerRecord,
};
use crate::tokens::Tokens;
use crate::StartupError;

/// Failure reasons that are not the release's fault (the agent refused before installing), so
/// they do not count towards auto-halt or the promotion gate.
pub const NOT_RELEASE_DEFECTS: &[&str] =
    &["downgrade", "needs_hop", "wrong_platform", "quarantined"];

/// How often a worker's `last_seen` is written when nothing else about it changed.
const INVENTORY_WRITE_INTERVAL_SECS: i64 = 300;

/// A `/latest` response, serialised once.
#[derive(Debug, Clone)]
pub struct CachedBody {
    /// The JSON.
    pub body: Bytes,
    /// Its quoted ETag.
    pub etag: String,
}

impl CachedBody {
    fn new(value: &serde_json::Value) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let digest = Sha256::digest(&body);
        CachedBody {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body,
        }
    }
}

/// A channel as served.
#[derive(Debug)]
pub struct ChannelView {
    /// The current statement.
    pub statement: Signed<ChannelStatement>,
    /// The release it points to.
    pub release: Signed<Release>,
    /// The rollback directive attached, if any.
    pub rollback: Option<Signed<Rollback>>,
    /// Why it is halted.
    pub halt_reason: String,
    plain: CachedBody,
    with_rollback: Option<CachedBody>,
}

/// A stored release, parsed.
#[derive(Debug, Clone)]
struct StoredRelease {
    record: ReleaseRecord,
    doc: Signed<Release>,
}

#[derive(Debug)]
struct Trust {
    /// Raw root documents by version.
    chain: BTreeMap<u64, Bytes>,
    current: Root,
    /// `/latest` body for a channel nothing was promoted on.
    empty: CachedBody,
}

#[derive(Debug, Clone)]
struct Seen {
    version: String,
    platform: String,
    channel: String,
    last_seen: i64,
    last_written: i64,
}

/// Channel summary, as returned by the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelSummary {
    /// Channel name.
    pub channel: String,
    /// Version offered.
    pub version: String,
    /// Rollout percentage.
    pub percent: u8,
    /// Halted?
    pub halted: bool,
    /// Why.
    pub halt_reason: String,
    /// Statement serial.
    pub serial: u64,
    /// Statement issue time.
    pub issued_at: String,
    /// Statement expiry.
    pub expires: String,
    /// Channel minimum version.
    pub minimum_version: String,
    /// Channel recommended version.
    pub recommended_version: String,
    /// Urgent flag.
    pub urgent: bool,
    /// The rollback directive's target, when one is attached.
    pub rollback_to: Option<String>,
}

/// Body of `POST /api/admin/channels/<channel>/promote`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Version to offer.
    pub version: String,
    /// Rollout percentage (default 100).
    #[serde(default = "hundred")]
    pub percent: u8,
    /// Why (audit).
    #[serde(default)]
    pub reason: String,
    /// Skip the stable soak gate (requires a reason).
    #[serde(default, rename = "override")]
    pub override_gate: bool,
    /// New channel minimum version (default: keep).
    #[serde(default)]
    pub minimum_version: Option<String>,
    /// Mark the update urgent.
    #[serde(default)]
    pub urgent: bool,
}

fn hundred() -> u8 {
    100
}

/// Body of `POST /api/workers/register`.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterRequest {
    /// Stable worker id.
    pub worker_id: String,
    /// Running version.
    pub current_version: String,
    /// Target triple.
    pub platform: String,
    /// Channel followed.
    pub channel: String,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Task types served.
    #[serde(default)]
    pub task_types: Vec<String>,
}

/// Body of `POST /api/worker-updates/report`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportRequest {
    /// Reporting worker.
    pub worker_id: String,
    /// Correlation id of the attempt.
    pub correlation_id: String,
    /// Version before.
    pub from_version: String,
    /// Version attempted.
    pub to_version: String,
    /// `success`, `failure`, `rolled_back`, `deferred`.
    pub outcome: String,
    /// Reason label.
    #[serde(default)]
    pub reason: String,
    /// Duration of the attempt.
    #[serde(default)]
    pub duration_ms: u64,
    /// When (RFC 3339 UTC seconds).
    pub at: String,
    /// Channel (default: the worker's registered channel).
    #[serde(default)]
    pub channel: Option<String>,
}

/// The server.
pub struct App {
    /// Configuration.
    pub config: ServeConfig,
    /// Accepted tokens.
    pub tokens: Tokens,
    /// Metrics.
    pub metrics: Metrics,
    store: Arc<dyn Store>,
    channel_key: PrivateKey,
    artifacts_dir: PathBuf,
    trust: RwLock<Trust>,
    releases: RwLock<BTreeMap<String, StoredRelease>>,
    artifacts: RwLock<BTreeMap<String, u64>>,
    views: RwLock<BTreeMap<String, Arc<ChannelView>>>,
    inventory: Mutex<HashMap<String, Seen>>,
    changes: watch::Sender<u64>,
    /// Serialises admin changes (serials must only grow, one writer at a time).
    admin: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse_version(field: &str, text: &str) -> Result<Version, ApiError> {
    text.parse().map_err(|e| {
        ApiError::bad_request(format!("{field} {text:?} is not a semantic version: {e}"))
    })
}

impl App {
    /// Opens the data directory, checks the configuration and loads the state.
    pub fn open(config: ServeConfig, store: Arc<dyn Store>) -> Result<Self, StartupError> {
        let artifacts_dir = config.data_dir.join("artifacts");
        std::fs::create_dir_all(artifacts_dir.join("incoming")).map_err(|e| {
            StartupError::Config(format!("cannot create {}: {e}", artifacts_dir.display()))
        })?;
        let mut trust = load_trust(&config.root, store.as_ref())?;
        trust.empty = empty_body(trust.current.version, config.poll_interval);
        let channel_key = PrivateKey::load(&config.channel_key)
            .map_err(|e| StartupError::Config(format!("channel key: {e}")))?;
        let role = trust.current.role(RoleName::Channel);
        if !role.keyids.contains(&channel_key.keyid()) {
            return Err(StartupError::Config(format!(
                "channel key {} ({}) is not a key of the channel role of root version {} (channel keys: {})",
                config.channel_key.display(),
                channel_key.keyid(),
                trust.current.version,
                role.keyids.join(", ")
            )));
        }
        if role.threshold > 1 {
            return Err(StartupError::Config(format!(
                "the channel role of root version {} needs {} signatures; this server holds one channel key",
                trust.current.version, role.threshold
            )));
        }
        if trust
            .current
            .check_expiry(now(), ExpirationEnforcement::Safe)
            .is_err()
        {
            tracing::warn!(
                root_version = trust.current.version,
                expires = %trust.current.expires,
                "the current root has expired: agents refuse every update until a rotated root is published"
            );
        }
        let tokens = Tokens::load(&config.admin_token_file, &config.worker_token_file)?;

        // Stored releases are verified again against the current root: whoever can write the
        // database must not get a release served.
        let mut releases = BTreeMap::new();
        for record in store.releases()? {
            let doc = match Signed::<Release>::from_slice(&record.body) {
                Ok(doc) => doc,
                Err(error) => {
                    tracing::error!(version = %record.version, %error, "stored release unreadable; not served");
                    continue;
                }
            };
            let mut check = trust.current.verify_signed(RoleName::Release, &doc);
            if check.is_ok() {
                check = doc.signed.validate();
            }
            match check {
                Ok(()) => {
                    releases.insert(record.version.clone(), StoredRelease { record, doc });
                }
                Err(error) => tracing::error!(
                    version = %record.version,
                    %error,
                    reason = %error.reason(),
                    "stored release does not verify against the current root; not served"
                ),
            }
        }
        let artifacts = store.artifacts()?.into_iter().collect();
        let now_secs = now().unix();
        let inventory = store
            .workers()?
            .into_iter()
            .map(|w| {
                (
                    w.worker_id.clone(),
                    Seen {
                        version: w.version,
                        platform: w.platform,
                        channel: w.channel,
                        last_seen: w.last_seen,
                        last_written: w.last_seen.min(now_secs),
                    },
                )
            })
            .collect();
        let (changes, _) = watch::channel(0);
        let app = App {
            tokens,
            metrics: Metrics::new(),
            store: store.clone(),
            channel_key,
            artifacts_dir,
            trust: RwLock::new(trust),
            releases: RwLock::new(releases),
            artifacts: RwLock::new(artifacts),
            views: RwLock::new(BTreeMap::new()),
            inventory: Mutex::new(inventory),
            changes,
            admin: tokio::sync::Mutex::new(()),
            config,
        };
        for record in store.channels()? {
            let channel = record.channel.clone();
            if let Err(error) = app.install_view(record) {
                tracing::error!(%channel, %error, "stored channel state unusable; channel not served");
            }
        }
        Ok(app)
    }

    /// Runs `f` on the store off the async runtime.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// A receiver that changes whenever any channel (or the root) changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Current root version.
    pub fn root_version(&self) -> u64 {
        read_lock(&self.trust).current.version
    }

    /// Raw root document `version`.
    pub fn root_document(&self, version: u64) -> Option<Bytes> {
        read_lock(&self.trust).chain.get(&version).cloned()
    }

    /// Where artifact `sha256` is stored, if it is.
    pub fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        read_lock(&self.artifacts)
            .contains_key(sha256)
            .then(|| self.artifacts_dir.join(sha256))
    }

    // ----- worker side ------------------------------------------------------------------------

    /// The `/latest` body for a worker on `channel` running `current_version`.
    pub fn latest_body(&self, channel: &str, current_version: &Version) -> CachedBody {
        if let Some(view) = read_lock(&self.views).get(channel) {
            if let (Some(with_rollback), Some(rollback)) = (&view.with_rollback, &view.rollback) {
                if rollback.signed.from.contains(current_version) {
                    return with_rollback.clone();
                }
            }
            return view.plain.clone();
        }
        read_lock(&self.trust).empty.clone()
    }

    /// Records that a worker was seen; writes to the store only when something changed or the
    /// last write is old (so a poll does not cost a write).
    pub async fn record_seen(
        &self,
        worker_id: &str,
        version: &str,
        platform: &str,
        channel: &str,
        registration: Option<(&str, &[String])>,
    ) -> Result<(), ApiError> {
        let now_secs = now().unix();
        let must_write = {
            let mut inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = inventory
                .entry(worker_id.to_owned())
                .or_insert_with(|| Seen {
                    version: String::new(),
                    platform: String::new(),
                    channel: String::new(),
                    last_seen: now_secs,
                    last_written: i64::MIN,
                });
            let changed =
                entry.version != version || entry.platform != platform || entry.channel != channel;
            entry.last_seen = now_secs;
            let must_write = registration.is_some()
                || changed
                || now_secs - entry.last_written >= INVENTORY_WRITE_INTERVAL_SECS;
            if must_write {
                version.clone_into(&mut entry.version);
                platform.clone_into(&mut entry.platform);
                channel.clone_into(&mut entry.channel);
                entry.last_written = now_secs;
            }
            must_write
        };
        if must_write {
            let (hostname, task_types) = registration.unwrap_or(("", &[]));
            let record = WorkerRecord {
                worker_id: worker_id.to_owned(),
                version: version.to_owned(),
                platform: platform.to_owned(),
                channel: channel.to_owned(),
                hostname: hostname.to_owned(),
                task_types: serde_json::to_string(task_types).unwrap_or_else(|_| "[]".to_owned()),
                last_seen: now_secs,
            };
            self.db(move |store| store.upsert_worker(&record)).await?;
        }
        Ok(())
    }

    /// The handshake answer for a worker.
    pub async fn register(&self, request: RegisterRequest) -> Result<serde_json::Value, ApiError> {
        let current = parse_version("current_version", &request.current_version)?;
        require_nonempty("worker_id", &request.worker_id)?;
        require_nonempty("channel", &request.channel)?;
        require_nonempty("platform", &request.platform)?;
        self.record_seen(
            &request.worker_id,
            &request.current_version,
            &request.platform,
            &request.channel,
            Some((&request.hostname, &request.task_types)),
        )
        .await?;
        let (minimum, recommended) = match read_lock(&self.views).get(&request.channel) {
            Some(view) => (
                view.statement.signed.minimum_version.clone(),
                view.statement.signed.recommended_version.clone(),
            ),
            None => (Version::new(0, 0, 0), current.clone()),
        };
        let below_minimum = current.cmp_precedence(&minimum).is_lt();
        if below_minimum {
            tracing::warn!(worker_id = %request.worker_id, version = %current, %minimum, "worker below the channel's minimum version");
        }
        Ok(serde_json::json!({
            "minimum_version": minimum.to_string(),
            "recommended_version": recommended.to_string(),
            "poll_interval_s": self.config.poll_interval.as_secs(),
            "below_minimum": below_minimum,
            "root_version": self.root_version(),
        }))
    }

    /// Stores an update report, counts it, and halts the channel when its release fails too often.
    pub async fn report(&self, request: ReportRequest) -> Result<(), ApiError> {
        const OUTCOMES: [&str; 4] = ["success", "failure", "rolled_back", "deferred"];
        if !OUTCOMES.contains(&request.outcome.as_str()) {
            return Err(ApiError::bad_request(format!(
                "outcome {:?} is not one of {}",
                request.outcome,
                OUTCOMES.join(", ")
            )));
        }
        require_nonempty("worker_id", &request.worker_id)?;
        parse_version("to_version", &request.to_version)?;
        let at: Timestamp = request
            .at
            .parse()
            .map_err(|e| ApiError::bad_request(format!("at: {e}")))?;
        let channel = match &request.channel {
            Some(channel) => channel.clone(),
            None => self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&request.worker_id)
                .map(|seen| seen.channel.clone())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "worker {} never registered and the report names no channel",
                        request.worker_id
                    ))
                })?,
        };
        let record = ReportRecord {
            worker_id: request.worker_id.clone(),
            channel: channel.clone(),
            correlation_id: request.correlation_id.clone(),
            from_version: request.from_version.clone(),
            to_version: request.to_version.clone(),
            outcome: request.outcome.clone(),
            reason: request.reason.clone(),
            duration_ms: i64::try_from(request.duration_ms).unwrap_or(i64::MAX),
            at: at.unix(),
            received_at: now().unix(),
        };
        self.db(move |store| store.add_report(&record)).await?;
        self.metrics
            .update_reports
            .with_label_values(&[&request.outcome, &request.reason, &request.to_version])
            .inc();
        tracing::info!(
            worker_id = %request.worker_id,
            correlation_id = %request.correlation_id,
            %channel,
            from_version = %request.from_version,
            to_version = %request.to_version,
            outcome = %request.outcome,
            reason = %request.reason,
            duration_ms = request.duration_ms,
            "update report"
        );
        if matches!(request.outcome.as_str(), "failure" | "rolled_back")
            && !NOT_RELEASE_DEFECTS.contains(&request.reason.as_str())
        {
            self.consider_auto_halt(&channel, &request.to_version)
                .await?;
        }
        Ok(())
    }

    async fn consider_auto_halt(&self, channel: &str, version: &str) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        let offering = read_lock(&self.views)
            .get(channel)
            .filter(|view| {
                !view.statement.signed.halted && view.release.signed.version.to_string() == version
            })
            .is_some();
        if !offering {
            return Ok(());
        }
        let (channel_owned, version_owned) = (channel.to_owned(), version.to_owned());
        let counts = self
            .db(move |store| {
                store.release_outcomes(&channel_owned, &version_owned, NOT_RELEASE_DEFECTS)
            })
            .await?;
        let ratio = if counts.tried == 0 {
            0.0
        } else {
            counts.failed as f64 / counts.tried as f64
        };
        let by_count = counts.failed >= self.config.auto_halt_failures;
        let by_ratio =
            counts.tried >= self.config.auto_halt_min_tried && ratio >= self.config.auto_halt_ratio;
        if !(by_count || by_ratio) {
            return Ok(());
        }
        let reason = format!(
            "auto-halt: {} of {} workers that tried {version} on {channel} failed or rolled back (thresholds: {} workers, or {:.0}% once {} tried)",
            counts.failed,
            counts.tried,
            self.config.auto_halt_failures,
            self.config.auto_halt_ratio * 100.0,
            self.config.auto_halt_min_tried
        );
        tracing::warn!(%channel, %version, failed = counts.failed, tried = counts.tried, "{reason}");
        self.change_channel(channel, "auto_halt", "auto-halt", &reason, |current| {
            Ok(ChannelChange {
                halted: Some(true),
                halt_reason: Some(reason.clone()),
                ..ChannelChange::from(current)
            })
        })
        .await?;
        Ok(())
    }

    // ----- admin side -------------------------------------------------------------------------

    /// Verifies and stores a release manifest.
    pub async fn publish_release(
        &self,
        body: Bytes,
        actor: &str,
    ) -> Result<(StatusCode, serde_json::Value), ApiError> {
        let doc = Signed::<Release>::from_slice(&body)?;
        {
            let trust = read_lock(&self.trust);
            trust.current.verify_signed(RoleName::Release, &doc)?;
        }
        doc.signed.validate()?;
        if doc.signed.product != manifests::PRODUCT {
            return Err(manifests::Error::WrongProduct {
                expected: manifests::PRODUCT.to_owned(),
                offered: doc.signed.product.clone(),
            }
            .into());
        }
        if doc.signed.artifacts.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "malformed",
                "the release lists no artifact",
            ));
        }
        let version = doc.signed.version.to_string();
        let record = ReleaseRecord {
            version: version.clone(),
            manifest_sha256: doc.signed_sha256()?,
            body: body.to_vec(),
            published_at: now().unix(),
        };
        let audit = AuditRecord {
            at: record.published_at,
            kind: "publish".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: version.clone(),
            detail: format!("manifest {}", record.manifest_sha256),
        };
        let stored = record.clone();
        let outcome = self
            .db(move |store| store.put_release(&stored, &audit))
            .await?;
        let status = match outcome {
            PutRelease::Conflict => {
                return Err(ApiError::conflict(
                    "conflict",
                    format!("release {version} is already published with another manifest; publish a new version"),
                ))
            }
            PutRelease::Identical => StatusCode::OK,
            PutRelease::Inserted => {
                tracing::info!(%version, manifest_sha256 = %record.manifest_sha256, %actor, "release published");
                write_lock(&self.releases).insert(version.clone(), StoredRelease { record: record.clone(), doc: doc.clone() });
                StatusCode::CREATED
            }
        };
        Ok((
            status,
            serde_json::json!({
                "version": version,
                "manifest_sha256": record.manifest_sha256,
                "missing_artifacts": self.missing_artifacts(&doc.signed),
            }),
        ))
    }

    fn missing_artifacts(&self, release: &Release) -> Vec<String> {
        let artifacts = read_lock(&self.artifacts);
        release
            .artifacts
            .iter()
            .filter(|a| !artifacts.contains_key(&a.sha256))
            .map(|a| a.sha256.clone())
            .collect()
    }

    /// Every stored release with its completeness.
    pub fn list_releases(&self) -> serde_json::Value {
        let releases = read_lock(&self.releases);
        let list: Vec<_> = releases
            .values()
            .map(|r| {
                let missing = self.missing_artifacts(&r.doc.signed);
                serde_json::json!({
                    "version": r.record.version,
                    "manifest_sha256": r.record.manifest_sha256,
                    "published_at": Timestamp::from_unix(r.record.published_at).map(|t| t.to_string()),
                    "complete": missing.is_empty(),
                    "missing_artifacts": missing,
                })
            })
            .collect();
        serde_json::json!({ "releases": list })
    }

    /// The signed size of artifact `sha256` in any stored release.
    pub fn expected_artifact(&self, sha256: &str) -> Option<manifests::Artifact> {
        read_lock(&self.releases)
            .values()
            .flat_map(|r| r.doc.signed.artifacts.iter())
            .find(|a| a.sha256 == sha256)
            .cloned()
    }

    /// Whether an artifact is already stored.
    pub fn has_artifact(&self, sha256: &str) -> bool {
        read_lock(&self.artifacts).contains_key(sha256)
    }

    /// The directory uploads are staged in (same filesystem as the store, for atomic renames).
    pub fn incoming_dir(&self) -> PathBuf {
        self.artifacts_dir.join("incoming")
    }

    /// Moves a verified upload into place (fsync'd) and records it.
    pub async fn commit_artifact(
        &self,
        staged: tempfile::NamedTempFile,
        sha256: &str,
        size: u64,
    ) -> Result<(), ApiError> {
        let target = self.artifacts_dir.join(sha256);
        let dir = self.artifacts_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            staged.as_file().sync_all()?;
            staged.persist(&target).map_err(|e| e.error)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| ApiError::internal(format!("storing artifact: {e}")))?
        .map_err(|e| ApiError::internal(format!("storing artifact {sha256}: {e}")))?;
        let sha = sha256.to_owned();
        self.db(move |store| store.add_artifact(&sha, size, now().unix()))
            .await?;
        write_lock(&self.artifacts).insert(sha256.to_owned(), size);
        tracing::info!(%sha256, size, "artifact stored");
        Ok(())
    }

    /// Offers `request.version` on `channel`.
    pub async fn promote(
        &self,
        channel: &str,
        request: PromoteRequest,
        actor: &str,
    ) -> Result<ChannelSummary, ApiError> {
        validate_channel_name(channel)?;
        if request.percent > 100 {
            return Err(ApiError::bad_request(format!(
                "percent {} is above 100",
                request.percent
            )));
        }
        if request.override_gate && request.reason.trim().is_empty() {
            return Err(ApiError::bad_request(
                "--override needs a --reason, written to the audit trail",
            ));
        }
        let version = parse_version("version", &request.version)?;
        let release = self.verified_release(&version)?;
        let _admin = self.admin.lock().await;
        if channel == "stable" {
            if request.override_gate {
                tracing::warn!(%channel, %version, %actor, reason = %request.reason, "promotion gate overridden");
            } else {
                self.check_stable_gate(&version).await?;
            }
        }
        let minimum = match &request.minimum_version {
            Some(text) => Some(parse_version("minimum_version", text)?),
            None => None,
        };
        let detail = format!(
            "{version} at {}%{}{}",
            request.percent,
            if request.override_gate {
                " (gate overridden)"
            } else {
                ""
            },
            if request.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", request.reason)
            }
        );
        let percent = request.percent;
        let urgent = request.urgent;
        let summary = self
            .change_channel_locked(
                channel,
                "promote",
                actor,
                &detail,
                Some(percent),
                |current| {
                    let same_release = current.is_some_and(|c| c.release.signed.version == version);
                    let base = ChannelChange::from(current);
                    Ok(ChannelChange {
                        release: Some(release.clone()),
                        percent,
                        salt: if same_release {
                            base.salt.clone()
                        } else {
                            format!("{channel}-{version}")
                        },
                        minimum_version: minimum.clone().unwrap_or(base.minimum_version.clone()),
                        halted: Some(false),
                        halt_reason: Some(String::new()),
                        urgent,
                        rollback: None,
                        ..base
                    })
                },
            )
            .await?;
        Ok(summary)
    }

    async fn check_stable_gate(&self, version: &Version) -> Result<(), ApiError> {
        let version_text = version.to_string();
        let (v1, v2) = (version_text.clone(), version_text.clone());
        let first = self
            .db(move |store| store.first_promotion("canary", &v1))
            .await?;
        let Some(first) = first else {
            return Err(ApiError::conflict(
                "soak",
                format!("{version} has never been on canary; promote it there first (or --override --reason)"),
            ));
        };
        let soaked = u64::try_from(now().unix() - first).unwrap_or(0);
        let soak = self.config.soak.as_secs();
        if soaked < soak {
            return Err(ApiError::conflict(
                "soak",
                format!(
                    "{version} has been on canary for {soaked} s, the soak time is {soak} s ({} s to go; or --override --reason)",
                    soak - soaked
                ),
            ));
        }
        let counts = self
            .db(move |store| store.release_outcomes("canary", &v2, NOT_RELEASE_DEFECTS))
            .await?;
        if counts.succeeded == 0 {
            return Err(ApiError::conflict(
                "soak",
                format!("no canary worker has installed {version} successfully yet (or --override --reason)"),
            ));
        }
        let rate = counts.failed as f64 / counts.tried.max(1) as f64;
        if rate > self.config.promote_max_failure_rate {
            return Err(ApiError::conflict(
                "failure_rate",
                format!(
                    "{} of {} canary workers failed or rolled back {version} ({:.0}% > {:.0}%; or --override --reason)",
                    counts.failed,
                    counts.tried,
                    rate * 100.0,
                    self.config.promote_max_failure_rate * 100.0
                ),
            ));
        }
        Ok(())
    }

    /// Halts a channel: no worker is offered an update until it is resumed.
    pub async fn halt(
        &self,
        channel: &str,
        reason: &str,
        actor: &str,
    ) -> Result<ChannelSummary, ApiError> {
        if reason.trim().is_empty() {
            return Err(ApiError::bad_request("halting needs a reason"));
        }
        let reason = reason.to_owned();
        self.change_channel(channel, "halt", actor, &reason.clone(), move |current| {
            current.ok_or_else(|| {
                ApiError::not_found(format!("channel {channel:?} has nothing to halt"))
            })?;
            Ok(ChannelChange {
                halted: Some(true),
                halt_reason: Some(reason.clone()),
                ..ChannelChange::from(current)
            })
        })
        .await
    }

    /// Resumes a halted channel.
    pub async fn resume(
        &self,
        channel: &str,
        reason: &str,
        actor: &str,
    ) -> Result<ChannelSummary, ApiError> {
        self.change_channel(channel, "resume", actor, reason, |current| {
            current.ok_or_else(|| {
                ApiError::not_found(format!("channel {channel:?} has nothing to resume"))
            })?;
            Ok(ChannelChange {
                halted: Some(false),
                halt_reason: Some(String::new()),
                ..ChannelChange::from(current)
            })
        })
        .await
    }

    /// Points a channel at a lower release, with the signed directive that lets agents go down.
    pub async fn rollback(
        &self,
        channel: &str,
        directive: serde_json::Value,
        reason: &str,
        actor: &str,
    ) -> Result<ChannelSummary, ApiError> {
        let bytes =
            serde_json::to_vec(&directive).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let doc = Signed::<Rollback>::from_slice(&bytes)?;
        {
            let trust = read_lock(&self.trust);
            trust.current.verify_signed(RoleName::Release, &doc)?;
        }
        let now_ts = now();
        if doc.signed.expires <= now_ts {
            return Err(manifests::Error::Expired {
                doc: "rollback",
                expires: doc.signed.expires,
                now: now_ts,
            }
            .into());
        }
        if doc.signed.product != manifests::PRODUCT {
            return Err(manifests::Error::WrongProduct {
                expected: manifests::PRODUCT.to_owned(),
                offered: doc.signed.product.clone(),
            }
            .into());
        }
        let release = self.verified_release(&doc.signed.to)?;
        let detail = format!(
            "to {} for agents on {}{}",
            doc.signed.to,
            doc.signed
                .from
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if reason.is_empty() {
                format!(": {}", doc.signed.reason)
            } else {
                format!(": {reason}")
            }
        );
        let _admin = self.admin.lock().await;
        self.change_channel_locked(channel, "rollback", actor, &detail, Some(100), |current| {
            let base = ChannelChange::from(current);
            Ok(ChannelChange {
                release: Some(release.clone()),
                percent: 100,
                salt: format!("{channel}-rollback-{}", doc.signed.to),
                halted: Some(false),
                halt_reason: Some(String::new()),
                urgent: true,
                rollback: Some(doc.clone()),
                ..base
            })
        })
        .await
    }

    /// Accepts root N+1 (a valid rotation from the current root).
    pub async fn publish_root(&self, body: Bytes, actor: &str) -> Result<u64, ApiError> {
        let doc = Signed::<Root>::from_slice(&body)?;
        let _admin = self.admin.lock().await;
        let current = read_lock(&self.trust).current.clone();
        let next = manifests::verify_rotation(&current, &doc)?;
        if !next
            .roles
            .channel
            .keyids
            .contains(&self.channel_key.keyid())
        {
            return Err(ApiError::conflict(
                "channel_key",
                format!(
                    "root version {} does not authorise this server's channel key {}: restart the server with --root (the new root) and --channel-key (a key of its channel role) instead",
                    next.version,
                    self.channel_key.keyid()
                ),
            ));
        }
        let version = next.version;
        let audit = AuditRecord {
            at: now().unix(),
            kind: "root".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: version.to_string(),
            detail: format!("root rotated from version {} to {version}", current.version),
        };
        let stored = body.to_vec();
        self.db(move |store| store.add_root(version, &stored, &audit))
            .await?;
        {
            let mut trust = write_lock(&self.trust);
            trust.chain.insert(version, body);
            trust.current = next;
            trust.empty = empty_body(version, self.config.poll_interval);
        }
        self.rebuild_views();
        self.notify();
        tracing::info!(root_version = version, %actor, "root rotated");
        Ok(version)
    }

    /// Re-signs every statement that expires within the configured margin.
    pub async fn resign_due(&self) {
        let margin = i64::try_from(self.config.resign_margin().as_secs()).unwrap_or(i64::MAX);
        let due: Vec<String> = read_lock(&self.views)
            .iter()
            .filter(|(_, v)| v.statement.signed.expires.unix() - now().unix() <= margin)
            .map(|(name, _)| name.clone())
            .collect();
        for channel in due {
            let result = self
                .change_channel(
                    &channel,
                    "resign",
                    "server",
                    "statement refreshed before expiry",
                    |current| Ok(ChannelChange::from(current)),
                )
                .await;
            match result {
                Ok(summary) => {
                    tracing::info!(%channel, serial = summary.serial, expires = %summary.expires, "statement re-signed")
                }
                Err(error) => tracing::error!(%channel, %error, "re-signing failed"),
            }
        }
    }

    /// Admin status.
    pub async fn status(&self) -> Result<serde_json::Value, ApiError> {
        let channels: Vec<ChannelSummary> = read_lock(&self.views)
            .iter()
            .map(|(name, view)| summary(name, view))
            .collect();
        let stale_after = i64::try_from(self.config.stale_after.as_secs()).unwrap_or(i64::MAX);
        let now_secs = now().unix();
        let mut fleet: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let total = {
            let inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for seen in inventory.values() {
                let entry = fleet
                    .entry((seen.channel.clone(), seen.version.clone()))
                    .or_default();
                if now_secs - seen.last_seen > stale_after {
                    entry.1 += 1;
                } else {
                    entry.0 += 1;
                }
            }
            inventory.len()
        };
        let failures = self
            .db(move |store| store.failures_since(now_secs - 3600))
            .await?;
        Ok(serde_json::json!({
            "root_version": self.root_version(),
            "channels": channels,
            "fleet": fleet.into_iter().map(|((channel, version), (workers, stale))| serde_json::json!({
                "channel": channel, "version": version, "workers": workers, "stale": stale,
            })).collect::<Vec<_>>(),
            "failures_last_hour": failures.into_iter().map(|f| serde_json::json!({
                "channel": f.channel, "version": f.version, "outcome": f.outcome, "reason": f.reason, "count": f.count,
            })).collect::<Vec<_>>(),
            "workers_total": total,
        }))
    }

    /// Recent audit entries and reports, newest first.
    pub async fn audit(&self, limit: usize) -> Result<serde_json::Value, ApiError> {
        let entries = self.db(move |store| store.audit(limit)).await?;
        Ok(serde_json::json!({
            "entries": entries.into_iter().map(|e| serde_json::json!({
                "at": Timestamp::from_unix(e.at).map(|t| t.to_string()),
                "kind": e.kind, "actor": e.actor, "channel": e.channel, "version": e.version, "detail": e.detail,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Updates the fleet gauges from the inventory (called before each scrape).
    pub fn refresh_fleet_metrics(&self) {
        let stale_after = i64::try_from(self.config.stale_after.as_secs()).unwrap_or(i64::MAX);
        let now_secs = now().unix();
        let mut fresh: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut stale: BTreeMap<String, i64> = BTreeMap::new();
        {
            let inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for seen in inventory.values() {
                if now_secs - seen.last_seen > stale_after {
                    *stale.entry(seen.channel.clone()).or_default() += 1;
                } else {
                    *fresh
                        .entry((seen.version.clone(), seen.channel.clone()))
                        .or_default() += 1;
                }
                stale.entry(seen.channel.clone()).or_default();
            }
        }
        self.metrics.fleet_workers.reset();
        for ((version, channel), count) in fresh {
            self.metrics
                .fleet_workers
                .with_label_values(&[&version, &channel])
                .set(count);
        }
        self.metrics.fleet_workers_stale.reset();
        for (channel, count) in stale {
            self.metrics
                .fleet_workers_stale
                .with_label_values(&[&channel])
                .set(count);
        }
    }

    // ----- channel changes --------------------------------------------------------------------

    fn verified_release(&self, version: &Version) -> Result<Signed<Release>, ApiError> {
        let stored = read_lock(&self.releases)
            .get(&version.to_string())
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("release {version} is not published")))?;
        read_lock(&self.trust)
            .current
            .verify_signed(RoleName::Release, &stored.doc)?;
        let missing = self.missing_artifacts(&stored.doc.signed);
        if !missing.is_empty() {
            return Err(ApiError::conflict(
                "incomplete_release",
                format!(
                    "release {version} is missing artifact(s) {}: upload them first",
                    missing.join(", ")
                ),
            ));
        }
        Ok(stored.doc)
    }

    async fn change_channel(
        &self,
        channel: &str,
        kind: &str,
        actor: &str,
        detail: &str,
        change: impl FnOnce(Option<&ChannelView>) -> Result<ChannelChange, ApiError>,
    ) -> Result<ChannelSummary, ApiError> {
        // Auto-halt already holds the admin lock.
        if kind == "auto_halt" {
            return self
                .change_channel_locked(channel, kind, actor, detail, None, change)
                .await;
        }
        let _admin = self.admin.lock().await;
        self.change_channel_locked(channel, kind, actor, detail, None, change)
            .await
    }

    /// Signs the channel's next statement and makes it durable, then visible. The caller holds
    /// the admin lock.
    async fn change_channel_locked(
        &self,
        channel: &str,
        kind: &str,
        actor: &str,
        detail: &str,
        promotion_percent: Option<u8>,
        change: impl FnOnce(Option<&ChannelView>) -> Result<ChannelChange, ApiError>,
    ) -> Result<ChannelSummary, ApiError> {
        let current = read_lock(&self.views).get(channel).cloned();
        let next = change(current.as_deref())?;
        let release = next.release.clone().ok_or_else(|| {
            ApiError::not_found(format!("channel {channel:?} has no release yet"))
        })?;
        let issued = now();
        let ttl = i64::try_from(self.config.statement_ttl.as_secs()).unwrap_or(86_400);
        let statement = ChannelStatement {
            doc_type: DocType::Channel,
            channel: channel.to_owned(),
            serial: next.serial + 1,
            issued_at: issued,
            expires: issued.plus_secs(ttl),
            release: ReleasePointer {
                version: release.signed.version.clone(),
                manifest_sha256: release.signed_sha256()?,
                extra: BTreeMap::new(),
            },
            rollout: Rollout {
                percent: next.percent,
                salt: next.salt.clone(),
                extra: BTreeMap::new(),
            },
            minimum_version: next.minimum_version.clone(),
            recommended_version: release.signed.version.clone(),
            halted: next.halted.unwrap_or(false),
            urgent: next.urgent,
            extra: BTreeMap::new(),
        };
        let signed = Signed::sign(statement, &[&self.channel_key])?;
        let record = ChannelRecord {
            channel: channel.to_owned(),
            statement: signed.to_json_pretty()?,
            rollback: match &next.rollback {
                Some(doc) => Some(doc.to_json_pretty()?),
                None => None,
            },
            halt_reason: next.halt_reason.clone().unwrap_or_default(),
        };
        let audit = AuditRecord {
            at: issued.unix(),
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            channel: channel.to_owned(),
            version: release.signed.version.to_string(),
            detail: format!("serial {}: {detail}", signed.signed.serial),
        };
        let serial = signed.signed.serial;
        let version_text = release.signed.version.to_string();
        let stored = record.clone();
        self.db(move |store| {
            store.save_channel(
                &stored,
                serial,
                &audit,
                promotion_percent.map(|p| (version_text.as_str(), p)),
            )
        })
        .await?;
        self.install_view(record)?;
        self.notify();
        let view = read_lock(&self.views)
            .get(channel)
            .cloned()
            .ok_or_else(|| ApiError::internal("channel vanished"))?;
        tracing::info!(%channel, %kind, %actor, serial, version = %view.release.signed.version, percent = view.statement.signed.rollout.percent, halted = view.statement.signed.halted, "channel statement signed");
        Ok(summary(channel, &view))
    }

    /// Parses and verifies a stored channel record, then serves it.
    fn install_view(&self, record: ChannelRecord) -> Result<(), ApiError> {
        let statement = Signed::<ChannelStatement>::from_slice(&record.statement)?;
        let release = read_lock(&self.releases)
            .get(&statement.signed.release.version.to_string())
            .map(|r| r.doc.clone())
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "release {} of the statement is not stored (or does not verify)",
                    statement.signed.release.version
                ))
            })?;
        // Verified again, as if signed now: whoever can write the database must not get a
        // statement served, or re-signed with our key.
        read_lock(&self.trust)
            .current
            .verify_signed(RoleName::Channel, &statement)?;
        if statement.signed.channel != record.channel
            || release.signed_sha256()? != statement.signed.release.manifest_sha256
        {
            return Err(ApiError::internal(format!(
                "the stored statement of channel {} does not pin its stored release",
                record.channel
            )));
        }
        let rollback = match &record.rollback {
            Some(bytes) => {
                let doc = Signed::<Rollback>::from_slice(bytes)?;
                read_lock(&self.trust)
                    .current
                    .verify_signed(RoleName::Release, &doc)?;
                Some(doc)
            }
            None => None,
        };
        let view = self.build_view(statement, release, rollback, record.halt_reason);
        self.update_channel_metrics(&record.channel, &view);
        write_lock(&self.views).insert(record.channel, Arc::new(view));
        Ok(())
    }

    fn build_view(
        &self,
        statement: Signed<ChannelStatement>,
        release: Signed<Release>,
        rollback: Option<Signed<Rollback>>,
        halt_reason: String,
    ) -> ChannelView {
        let root_version = self.root_version();
        let poll = self.config.poll_interval.as_secs();
        let body = |with_rollback: bool| {
            CachedBody::new(&serde_json::json!({
                "root_version": root_version,
                "channel": statement,
                "release": release,
                "rollback": if with_rollback { serde_json::to_value(&rollback).unwrap_or_default() } else { serde_json::Value::Null },
                "poll_interval_s": poll,
            }))
        };
        ChannelView {
            plain: body(false),
            with_rollback: rollback.is_some().then(|| body(true)),
            statement,
            release,
            rollback,
            halt_reason,
        }
    }

    fn rebuild_views(&self) {
        let current: Vec<(String, Arc<ChannelView>)> = read_lock(&self.views)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, view) in current {
            let rebuilt = self.build_view(
                view.statement.clone(),
                view.release.clone(),
                view.rollback.clone(),
                view.halt_reason.clone(),
            );
            write_lock(&self.views).insert(name, Arc::new(rebuilt));
        }
    }

    fn update_channel_metrics(&self, channel: &str, view: &ChannelView) {
        let stmt = &view.statement.signed;
        let m = &self.metrics;
        m.channel_serial
            .with_label_values(&[channel])
            .set(i64::try_from(stmt.serial).unwrap_or(i64::MAX));
        m.channel_rollout_percent
            .with_label_values(&[channel])
            .set(i64::from(stmt.rollout.percent));
        m.channel_halted
            .with_label_values(&[channel])
            .set(i64::from(stmt.halted));
        #[allow(clippy::cast_precision_loss)]
        m.channel_statement_expiry
            .with_label_values(&[channel])
            .set(stmt.expires.unix() as f64);
        if let Some(previous) = read_lock(&self.views).get(channel) {
            let old = previous.release.signed.version.to_string();
            let _ = m.channel_release.remove_label_values(&[channel, &old]);
        }
        m.channel_release
            .with_label_values(&[channel, &stmt.release.version.to_string()])
            .set(1);
    }

    /// How long until the next statement needs re-signing (bounded, for the background loop).
    pub fn next_resign_check(&self) -> Duration {
        let margin = self.config.resign_margin();
        (margin / 4).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }
}

/// What a channel change sets; `From<Option<&ChannelView>>` starts from the current state.
#[derive(Debug, Clone)]
struct ChannelChange {
    serial: u64,
    release: Option<Signed<Release>>,
    percent: u8,
    salt: String,
    minimum_version: Version,
    halted: Option<bool>,
    halt_reason: Option<String>,
    urgent: bool,
    rollback: Option<Signed<Rollback>>,
}

impl From<Option<&ChannelView>> for ChannelChange {
    fn from(current: Option<&ChannelView>) -> Self {
        match current {
            Some(view) => ChannelChange {
                serial: view.statement.signed.serial,
                release: Some(view.release.clone()),
                percent: view.statement.signed.rollout.percent,
                salt: view.statement.signed.rollout.salt.clone(),
                minimum_version: view.statement.signed.minimum_version.clone(),
                halted: Some(view.statement.signed.halted),
                halt_reason: Some(view.halt_reason.clone()),
                urgent: view.statement.signed.urgent,
                rollback: view.rollback.clone(),
            },
            None => ChannelChange {
                serial: 0,
                release: None,
                percent: 0,
                salt: String::new(),
                minimum_version: Version::new(0, 0, 0),
                halted: None,
                halt_reason: None,
                urgent: false,
                rollback: None,
            },
        }
    }
}

fn summary(channel: &str, view: &ChannelView) -> ChannelSummary {
    let stmt = &view.statement.signed;
    ChannelSummary {
        channel: channel.to_owned(),
        version: stmt.release.version.to_string(),
        percent: stmt.rollout.percent,
        halted: stmt.halted,
        halt_reason: view.halt_reason.clone(),
        serial: stmt.serial,
        issued_at: stmt.issued_at.to_string(),
        expires: stmt.expires.to_string(),
        minimum_version: stmt.minimum_version.to_string(),
        recommended_version: stmt.recommended_version.to_string(),
        urgent: stmt.urgent,
        rollback_to: view.rollback.as_ref().map(|r| r.signed.to.to_string()),
    }
}

fn empty_body(root_version: u64, poll_interval: Duration) -> CachedBody {
    CachedBody::new(&serde_json::json!({
        "root_version": root_version,
        "channel": null,
        "release": null,
        "rollback": null,
        "poll_interval_s": poll_interval.as_secs(),
    }))
}

fn require_nonempty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    Ok(())
}

/// Channel names: 1-64 of `[a-z0-9_-]`.
pub fn validate_channel_name(channel: &str) -> Result<(), ApiError> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "channel name {channel:?}: use 1-64 of a-z, 0-9, '-', '_'"
        )))
    }
}

/// Loads the root chain: the stored one, extended by `--root` when that file is the next version.
fn load_trust(root_file: &Path, store: &dyn Store) -> Result<Trust, StartupError> {
    let bytes = std::fs::read(root_file).map_err(|e| {
        StartupError::Config(format!("cannot read root {}: {e}", root_file.display()))
    })?;
    let file_doc = Signed::<Root>::from_slice(&bytes)
        .map_err(|e| StartupError::Config(format!("root {}: {e}", root_file.display())))?;
    let now_ts = now();
    let stored = store.roots()?;
    let mut chain: BTreeMap<u64, Bytes> = BTreeMap::new();
    let mut current: Option<Root> = None;
    for (version, body) in stored {
        let doc = Signed::<Root>::from_slice(&body)
            .map_err(|e| StartupError::Config(format!("stored root version {version}: {e}")))?;
        let root = match &current {
            None => doc.verify_self(now_ts, ExpirationEnforcement::Unsafe),
            Some(previous) => manifests::verify_rotation(previous, &doc),
        }
        .map_err(|e| StartupError::Config(format!("stored root version {version}: {e}")))?;
        chain.insert(version, Bytes::from(body));
        current = Some(root);
    }
    let file_version = file_doc.signed.version;
    let audit = |detail: String| AuditRecord {
        at: now_ts.unix(),
        kind: "root".to_owned(),
        actor: "server".to_owned(),
        channel: String::new(),
        version: file_version.to_string(),
        detail,
    };
    let current = match current {
        None => {
            let root = file_doc
                .verify_self(now_ts, ExpirationEnforcement::Unsafe)
                .map_err(|e| StartupError::Config(format!("root {}: {e}", root_file.display())))?;
            store.add_root(file_version, &bytes, &audit(format!("trusted root version {file_version} installed from {}", root_file.display())))?;
            chain.insert(file_version, Bytes::from(bytes));
            root
        }
        Some(latest) if file_version == latest.version + 1 => {
            let root = manifests::verify_rotation(&latest, &file_doc).map_err(|e| {
                StartupError::Config(format!("root {} is not a valid rotation of stored root version {}: {e}", root_file.display(), latest.version))
            })?;
            store.add_root(file_version, &bytes, &audit(format!("root rotated to version {file_version} from {}", root_file.display())))?;
            chain.insert(file_version, Bytes::from(bytes));
            root
        }
        Some(latest) if file_version <= latest.version => {
            let same = chain
                .get(&file_version)
                .and_then(|stored| Signed::<Root>::from_slice(stored).ok())
                .is_some_and(|stored| stored.signed == file_doc.signed);
            if !same {
                return Err(StartupError::Config(format!(
                    "root {} (version {file_version}) is not the root version {file_version} this server already trusts",
                    root_file.display()
                )));
            }
            latest
        }
        Some(latest) => {
            return Err(StartupError::Config(format!(
                "root {} is version {file_version} but this server trusts version {}: publish the intermediate roots first",
                root_file.display(),
                latest.version
            )))
        }
    };
    Ok(Trust {
        empty: empty_body(current.version, Duration::from_secs(60)),
        chain,
        current,
    })
}
