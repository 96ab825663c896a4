//! Replicas on one PostgreSQL database (`--database-url`): nothing that decides what is served
//! lives only in one process.
//!
//! - **Wake-ups.** Every channel change is announced by the store on commit (`NOTIFY
//!   worker_updates_channels, '<channel>'`); every replica `LISTEN`s
//!   ([`crate::postgres::replicas::listen`]) and re-reads that channel's record, verifies it
//!   and serves it ([`App::install_view`]), then wakes its long polls. A full re-read every
//!   [`REREAD_INTERVAL`] (and after every reconnection of the listener) is the safety net for
//!   a lost notification. A statement naming a release this replica has not loaded yet (it was
//!   published through another one) loads the stored releases first; a newer root in the store
//!   is verified as a rotation of the current one and installed.
//! - **The admin lock.** [`AdminLock`] is the in-process mutex and, with PostgreSQL, a
//!   session-level advisory lock on a dedicated connection, so admin changes (promote, halt,
//!   resume, rollback, re-sign, auto-halt) on all replicas happen one at a time. Under it each
//!   change starts from the channel as stored ([`App::reread_channel_locked`]), so a change made
//!   through another replica is never overwritten, and re-signing and auto-halt, which every
//!   replica considers, are done by the first and found done by the others.
//! - **Serials.** The store refuses a serial that is not above every stored one
//!   ([`crate::store::StoreError::SerialConflict`]), so even a replica that could not take the
//!   shared lock never stores a serial twice ([`Error::SerialConflict`], `409`).
//!
//! Without PostgreSQL (SQLite: one replica) the lock is the in-process mutex alone and nothing
//! is re-read.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use manifests::{ChannelStatement, Release, Root, Signed, Version};
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use super::{read_lock, releases, trust, write_lock, App};
use crate::error::{Error, Result};
use crate::postgres::replicas::{self as pg, AdvisoryLock};

/// How often every replica re-reads every channel record (and the roots), whatever it was told.
pub const REREAD_INTERVAL: Duration = Duration::from_secs(5);

/// Serialises admin changes: in this process, and with PostgreSQL across every replica.
#[derive(Debug)]
pub struct AdminLock {
    local: Arc<tokio::sync::Mutex<()>>,
    shared: Option<Arc<AdvisoryLock>>,
}

/// Held while an admin change runs; dropping it releases the shared lock, then the local one.
#[derive(Debug)]
pub struct AdminGuard {
    local: Option<OwnedMutexGuard<()>>,
    /// Set when the shared lock is held.
    shared: Option<Arc<AdvisoryLock>>,
}

impl AdminLock {
    /// The in-process mutex alone (one replica: SQLite).
    pub(super) fn local() -> Self {
        AdminLock {
            local: Arc::new(tokio::sync::Mutex::new(())),
            shared: None,
        }
    }

    /// The in-process mutex, then `shared` (PostgreSQL).
    pub(super) fn shared(shared: AdvisoryLock) -> Self {
        AdminLock {
            shared: Some(Arc::new(shared)),
            ..AdminLock::local()
        }
    }

    /// Waits for the in-process mutex, then for the shared lock. When the shared lock cannot be
    /// taken (the database is unreachable, or another replica held it past its timeout) the
    /// change goes ahead under the local one, loudly: the store's serial check still refuses it
    /// if another replica changed the channel meanwhile.
    pub async fn lock(&self) -> AdminGuard {
        let local = self.local.clone().lock_owned().await;
        let Some(shared) = self.shared.clone() else {
            return AdminGuard {
                local: Some(local),
                shared: None,
            };
        };
        let (sender, receiver) = oneshot::channel();
        // The lock is taken off the runtime; when the caller is gone by then (a request
        // cancelled), the guard is dropped in that task, which releases it again.
        drop(tokio::task::spawn_blocking(move || {
            let guard = match shared.lock() {
                Ok(()) => AdminGuard {
                    local: Some(local),
                    shared: Some(shared),
                },
                Err(error) => {
                    tracing::error!(%error, "admin lock: not shared with the other replicas for this change (the store's serial check still refuses a lost race)");
                    AdminGuard {
                        local: Some(local),
                        shared: None,
                    }
                }
            };
            let _ = sender.send(guard);
        }));
        match receiver.await {
            Ok(guard) => guard,
            // The blocking task died: the local mutex was released with it.
            Err(_) => self.lock_local().await,
        }
    }

    /// The in-process mutex alone: what re-reading the store needs (it changes nothing stored,
    /// but must not install an older view over one a change of this process just installed).
    pub(super) async fn lock_local(&self) -> AdminGuard {
        AdminGuard {
            local: Some(self.local.clone().lock_owned().await),
            shared: None,
        }
    }
}

impl Drop for AdminGuard {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let local = self.local.take();
        // The shared lock first: the next local holder then takes it afresh.
        let release = move || {
            shared.unlock();
            drop(local);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}

impl App {
    /// Whether other replicas may share the store (PostgreSQL).
    fn replicated(&self) -> bool {
        self.config.database_url.is_some()
    }

    /// Under the admin lock, before a change of `channel` is decided: serves `channel` as stored
    /// (another replica may have changed it). Nothing to do without PostgreSQL.
    pub(super) async fn reread_channel_locked(&self, channel: &str) {
        if !self.replicated() {
            return;
        }
        if let Err(error) = self.reread(Some(channel), "admin lock").await {
            tracing::warn!(%channel, %error, "re-reading the channel before a change failed");
        }
    }

    /// Release `version` to offer ([`App::verified_release`]); one this replica has not loaded,
    /// or whose artifacts it does not know of yet, may have been published through another
    /// replica: the stored releases and artifacts are read again first.
    pub(super) async fn release_to_offer(&self, version: &Version) -> Result<Signed<Release>> {
        match self.verified_release(version) {
            Err(Error::ReleaseNotPublished { .. } | Error::IncompleteRelease { .. })
                if self.replicated() =>
            {
                self.reread_releases().await?;
                self.verified_release(version)
            }
            other => other,
        }
    }

    /// Follows the other replicas until `shutdown`: the notifications of the listener thread,
    /// and a full re-read every [`REREAD_INTERVAL`]. Returns at once without PostgreSQL.
    pub async fn follow_replicas(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(url) = self.config.database_url.clone() else {
            return;
        };
        let (sender, mut changes) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let listening = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("replica-listen".to_owned())
                .spawn(move || pg::listen(&url, &sender, &stop))
        };
        let mut listener_alive = match listening {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, "replica wake-ups: cannot start the listener thread; re-reading every {REREAD_INTERVAL:?} only");
                false
            }
        };
        let mut tick = tokio::time::interval(REREAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (mut only, via) = tokio::select! {
                _ = tick.tick() => (None, "periodic re-read"),
                change = changes.recv(), if listener_alive => match change {
                    Some(change) => (change, "notification"),
                    None => {
                        listener_alive = false;
                        continue;
                    }
                },
                () = shutdown.cancelled() => break,
            };
            // A burst (a root rotation re-signs every channel) is read once.
            while let Ok(more) = changes.try_recv() {
                if more != only {
                    only = None;
                }
            }
            let _local = self.admin.lock_local().await;
            if let Err(error) = self.reread(only.as_deref(), via).await {
                tracing::warn!(%error, via, "re-reading what other replicas changed failed; retried at the next notification or re-read");
            }
        }
        stop.store(true, Ordering::Relaxed);
    }

    /// Re-reads what other replicas may have changed: the created channels and the record of
    /// `only` (every record, and the roots, when `None`); serves each record whose serial is
    /// above the one served, and wakes the long polls when anything changed.
    async fn reread(&self, only: Option<&str>, via: &'static str) -> Result<()> {
        if only.is_none() {
            self.reread_roots().await?;
        }
        let names: BTreeSet<String> = self
            .db(|store| store.channel_names())
            .await?
            .into_iter()
            .collect();
        let mut changed = false;
        let gone: Vec<String> = {
            let mut known = write_lock(&self.channel_names);
            let gone = known.difference(&names).cloned().collect();
            *known = names;
            gone
        };
        for channel in gone {
            changed |= write_lock(&self.views).remove(&channel).is_some();
        }
        let records = self.db(|store| store.channels()).await?;
        for record in records {
            if only.is_some_and(|channel| channel != record.channel) {
                continue;
            }
            let statement = match Signed::<ChannelStatement>::from_slice(&record.statement) {
                Ok(statement) => statement,
                Err(error) => {
                    tracing::error!(channel = %record.channel, %error, "stored statement unreadable; the served one stays");
                    continue;
                }
            };
            let serial = statement.signed.serial;
            let served = read_lock(&self.views)
                .get(&record.channel)
                .map(|view| view.statement.signed.serial);
            if served.is_some_and(|served| served >= serial) {
                continue;
            }
            let version = statement.signed.release.version.to_string();
            if !read_lock(&self.releases).contains_key(&version) {
                self.reread_releases().await?;
            }
            let channel = record.channel.clone();
            match self.install_view(record) {
                Ok(()) => {
                    changed = true;
                    tracing::info!(%channel, serial, via, "channel changed through another replica: served here now");
                }
                Err(error) => {
                    tracing::error!(%channel, serial, %error, reason = %error.reason(), "channel changed through another replica, but the stored state does not verify here; the served one stays");
                }
            }
        }
        if changed {
            self.notify();
        }
        Ok(())
    }

    /// Loads the stored releases (and artifacts whose file is in `--data-dir`) not known here.
    async fn reread_releases(&self) -> Result<()> {
        let roots = read_lock(&self.trust).roots_newest_first();
        let loaded = self
            .db(move |store| releases::load_releases(store, &roots))
            .await?;
        let stored = self.db(|store| store.artifacts()).await?;
        {
            let mut known = write_lock(&self.releases);
            for (version, release) in loaded {
                known.entry(version).or_insert(release);
            }
        }
        let dir = self.artifacts_dir.clone();
        let present = tokio::task::spawn_blocking(move || {
            stored
                .into_iter()
                .filter(|(sha256, _)| dir.join(sha256).is_file())
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|source| Error::Task {
            context: "looking for shared artifacts",
            source,
        })?;
        let mut known = write_lock(&self.artifacts);
        for (sha256, size) in present {
            known.entry(sha256).or_insert(size);
        }
        Ok(())
    }

    /// Installs the roots stored after the current one (published through another replica,
    /// which also re-signs every channel), each verified as a rotation of the one before.
    async fn reread_roots(&self) -> Result<()> {
        let current = read_lock(&self.trust).current.version;
        let newer: Vec<(u64, Vec<u8>)> = self
            .db(|store| store.roots())
            .await?
            .into_iter()
            .filter(|(version, _)| *version > current)
            .collect();
        if newer.is_empty() {
            return Ok(());
        }
        for (version, body) in newer {
            let doc = Signed::<Root>::from_slice(&body)?;
            let previous = read_lock(&self.trust).current.clone();
            let next = manifests::verify_rotation(&previous, &doc)?;
            if !next
                .roles
                .channel
                .keyids
                .contains(&self.channel_key.keyid())
            {
                tracing::error!(root_version = version, keyid = %self.channel_key.keyid(), "root published through another replica drops this replica's channel key: restart it with the new --channel-key");
            }
            let mut trust = write_lock(&self.trust);
            trust.chain.insert(version, Bytes::from(body));
            trust.current = next;
            trust.empty = trust::empty_body(version, self.config.poll_interval);
            tracing::info!(
                root_version = version,
                "root rotated through another replica: trusted here now"
            );
        }
        self.rebuild_views();
        self.recheck_releases();
        self.notify();
        Ok(())
    }
}
