//! The server's state and operations, a module per concern: `trust` (the root chain),
//! `releases` (releases and artifacts), `channels` (channel statements, promote / halt /
//! resume / rollback, re-signing, the soak gate and auto-halt) and `fleet` (inventory and
//! reports). This module holds [`App`], its construction and the helpers they share.
//!
//! Reads are served from memory (the `/latest` body of each channel is built once per change,
//! with its ETag); every change is written to the [`Store`] before it becomes visible. The
//! operations return domain [`Error`]s; [`crate::http`] maps them to HTTP.

mod catalog;
mod channels;
pub mod console_views;
pub mod enrolment;
mod fleet;
mod labels;
mod reconcile;
mod releases;
mod replicas;
mod retention;
mod sightings;
mod trust;
pub mod waves;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use manifests::{ExpirationEnforcement, PrivateKey, Timestamp, Version};
use tokio::sync::watch;

pub use channels::{CachedBody, ChannelView};
pub use replicas::{AdminGuard, AdminLock, REREAD_INTERVAL};
pub use retention::Pruned;

use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreResult};
use crate::tokens::Tokens;
use crate::StartupError;
use fleet::Seen;
use releases::StoredRelease;
use trust::Trust;

/// The failure labels that are the release's fault (`manifests::FailureReason::RELEASE_DEFECTS`,
/// the one classification shared with the agent): only they count towards auto-halt and the
/// promotion gate. Mirror and network errors, full disks, expired statements, outages and
/// refusals are the environment's, and an unknown label counts for nothing.
pub fn release_defect_labels() -> Vec<&'static str> {
    manifests::FailureReason::RELEASE_DEFECTS
        .iter()
        .filter_map(|reason| reason.fixed_label())
        .collect()
}

/// The server.
pub struct App {
    /// Configuration.
    pub config: ServeConfig,
    /// Accepted tokens.
    pub tokens: Tokens,
    /// Join tokens and enrolled workers' credentials.
    pub enrolment: enrolment::Enrolment,
    /// Metrics.
    pub metrics: Metrics,
    /// Where every change is made durable before it becomes visible.
    store: Arc<dyn Store>,
    /// The online key channel statements are signed with.
    channel_key: PrivateKey,
    /// Content-addressed artifacts (`<sha256>`), with `incoming/` for uploads being staged.
    artifacts_dir: PathBuf,
    /// The root chain.
    trust: RwLock<Trust>,
    /// Releases that verify against the current root, by version.
    releases: RwLock<BTreeMap<String, StoredRelease>>,
    /// Stored artifacts: sha256 to size.
    artifacts: RwLock<BTreeMap<String, u64>>,
    /// Created channels (`worker-release channel create`): no other name is served or promoted.
    channel_names: RwLock<BTreeSet<String>>,
    /// Each channel as served, by name.
    views: RwLock<BTreeMap<String, Arc<ChannelView>>>,
    /// Workers seen, by id.
    inventory: Mutex<HashMap<String, Seen>>,
    /// Inventory writes queued by `/latest` (written behind, off the request).
    sightings: sightings::Sightings,
    /// Bumped on every channel or root change (wakes long polls).
    changes: watch::Sender<u64>,
    /// Serialises admin changes (serials must only grow, one writer at a time): in this
    /// process and, with PostgreSQL, across every replica (`state/replicas.rs`).
    admin: AdminLock,
    /// Rollout plans' progress between two passes of the wave loop.
    tracker: waves::Tracker,
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

fn parse_version(field: &'static str, text: &str) -> Result<Version> {
    text.parse().map_err(|source| Error::InvalidVersion {
        field,
        text: text.to_owned(),
        source,
    })
}

fn require_nonempty(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::MissingField { field });
    }
    Ok(())
}

/// Channel names: 1-64 of `[a-z0-9_-]`.
pub fn validate_channel_name(channel: &str) -> Result<()> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidChannelName {
            channel: channel.to_owned(),
        })
    }
}

impl App {
    /// Opens the data directory, checks the configuration and loads the state.
    pub fn open(config: ServeConfig, store: Arc<dyn Store>) -> Result<Self, StartupError> {
        let artifacts_dir = config.data_dir.join("artifacts");
        std::fs::create_dir_all(artifacts_dir.join("incoming")).map_err(|e| {
            StartupError::Config(format!("cannot create {}: {e}", artifacts_dir.display()))
        })?;
        let trust = Trust::load(&config, store.as_ref())?;
        let channel_key = PrivateKey::load(&config.channel_key).map_err(|e| match e {
            // The server signs online, unattended: there is no one to ask for a passphrase.
            manifests::Error::KeyEncrypted { path } => StartupError::Config(format!(
                "channel key {} is passphrase-encrypted: the update server signs \
                 channel statements unattended and never asks for a passphrase; give it an \
                 unencrypted online key (`worker-release keygen` without --encrypt, mode 0600) \
                 and keep --encrypt for the offline root and release keys",
                path.display()
            )),
            other => StartupError::Config(format!("channel key: {other}")),
        })?;
        trust.check_channel_key(&channel_key, &config.channel_key)?;
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
        let mut tokens = Tokens::load(
            &config.admin_token_file,
            config.worker_token_file.as_deref(),
        )?;
        if let Some(viewer_file) = &config.viewer_token_file {
            tokens = tokens.with_viewers(viewer_file)?;
        }
        let enrolment = enrolment::Enrolment::load(store.as_ref())?;
        if tokens.shared_worker_mode() {
            tracing::warn!(
                "--worker-token-file: shared worker token mode: whoever holds a shared token may report for any worker id that is not enrolled; enrol workers instead (DEPLOYMENT.md, \"Worker identity\")"
            );
        } else {
            tracing::info!("enrolled workers only (no --worker-token-file)");
        }
        let releases = releases::load_releases(store.as_ref(), &trust.roots_newest_first())?;
        let artifacts = store.artifacts()?.into_iter().collect();
        let channel_names = store.channel_names()?.into_iter().collect();
        let inventory = fleet::load_inventory(store.as_ref(), now().unix())?;
        let (changes, _) = watch::channel(0);
        let admin = match &config.database_url {
            Some(url) => AdminLock::shared(crate::postgres::replicas::AdvisoryLock::new(url)?),
            None => AdminLock::local(),
        };
        let app = App {
            tokens,
            enrolment,
            metrics: Metrics::new(),
            store: store.clone(),
            channel_key,
            artifacts_dir,
            trust: RwLock::new(trust),
            releases: RwLock::new(releases),
            artifacts: RwLock::new(artifacts),
            channel_names: RwLock::new(channel_names),
            views: RwLock::new(BTreeMap::new()),
            inventory: Mutex::new(inventory),
            sightings: sightings::Sightings::default(),
            changes,
            admin,
            tracker: waves::Tracker::default(),
            config,
        };
        app.load_channels()?;
        Ok(app)
    }

    /// Runs `f` on the store off the async runtime.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        let timer = self.metrics.store_operations.clone();
        tokio::task::spawn_blocking(move || {
            let _timed = timer.start_timer();
            f(store.as_ref())
        })
        .await
            .map_err(|source| Error::Task {
                context: "storage task failed",
                source,
            })?
            .map_err(|error| match error {
                // Not a failure: another replica changed the channel first (`state/replicas.rs`).
                StoreError::SerialConflict {
                    channel, stored, ..
                } => {
                    tracing::warn!(%channel, stored, "channel changed by another replica meanwhile: change refused");
                    Error::SerialConflict {
                        channel,
                        serial: stored,
                    }
                }
                error => {
                    tracing::error!(%error, "store failure");
                    Error::Store(error)
                }
            })
    }

    /// A receiver that changes whenever any channel (or the root) changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn notify(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// How long until the next statement needs re-signing (bounded, for the background loop).
    pub fn next_resign_check(&self) -> Duration {
        let margin = self.config.resign_margin();
        (margin / 4).clamp(Duration::from_millis(200), Duration::from_secs(60))
    }
}
