//! What replicas on one PostgreSQL database share besides the tables: the admin lock (a
//! session-level advisory lock on a connection of its own) and the wake-ups (`LISTEN
//! worker_updates_channels` on another connection of its own). Both connections are separate
//! from the store's, so a long-held lock or a parked `LISTEN` never takes a connection a
//! request needs.
//!
//! The notifications themselves are sent by the store (`pg_notify` in the transaction of the
//! change, so they are delivered on commit and never for a change that was rolled back).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use super::redact;
use crate::store::{StoreError, StoreResult};

/// The notification channel every change of a channel (its statement, its creation or
/// deletion) is announced on, with the channel's name as payload.
pub const CHANNELS: &str = "worker_updates_channels";

/// The payload of a change that concerns more than one channel (a root rotation): replicas
/// re-read everything.
pub const EVERYTHING: &str = "*";

/// The advisory lock key of the admin lock ("upds" + 2; the migrations use + 1).
const ADMIN_LOCK: i64 = 0x7570_6473_0002;

/// How long a replica waits for another one's admin change before giving up on the shared lock
/// (an admin change takes milliseconds; a replica stuck while holding it must not stop every
/// other one's admin changes for ever: the serial check of the store still refuses a lost race).
const LOCK_TIMEOUT: &str = "30s";

/// The shared admin lock: `pg_advisory_lock` on a dedicated connection. The caller serialises
/// its own tasks (the in-process mutex is taken first), so the session holds it at most once.
pub struct AdvisoryLock {
    config: Config,
    url: String,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn config(url: &str) -> StoreResult<Config> {
    Config::from_str(url).map_err(|source| StoreError::Postgres {
        url: redact(url),
        source,
    })
}

impl AdvisoryLock {
    /// The lock on database `url` (connected on first use, and again after a failure).
    pub fn new(url: &str) -> StoreResult<Self> {
        Ok(AdvisoryLock {
            config: config(url)?,
            url: redact(url),
            client: Mutex::new(None),
        })
    }

    /// Blocks until this replica holds the admin lock (at most [`LOCK_TIMEOUT`]).
    pub fn lock(&self) -> StoreResult<()> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let error = |source| StoreError::Postgres {
            url: self.url.clone(),
            source,
        };
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            let mut client = self.config.connect(NoTls).map_err(error)?;
            client
                .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
                .map_err(error)?;
            *slot = Some(client);
        }
        let Some(client) = slot.as_mut() else {
            unreachable!("connected just above");
        };
        let outcome = client
            .execute("SELECT pg_advisory_lock($1)", &[&ADMIN_LOCK])
            .map(drop)
            .map_err(error);
        if outcome.is_err() {
            // A fresh session next time: this one may be broken.
            *slot = None;
        }
        outcome
    }

    /// Releases the admin lock. When that fails the session is closed, which releases it too.
    pub fn unlock(&self) {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let released = slot.as_mut().is_some_and(|client| {
            client
                .query_one("SELECT pg_advisory_unlock($1)", &[&ADMIN_LOCK])
                .is_ok_and(|row| row.get::<_, bool>(0))
        });
        if !released {
            tracing::warn!(url = %self.url, "admin lock: unlock failed; closing its session to release it");
            *slot = None;
        }
    }
}

/// What [`listen`] hands over: a channel that changed, or `None` for "re-read everything" (a
/// root rotation, or the connection was (re)established and notifications may have been missed).
pub type Changed = Option<String>;

/// `LISTEN`s on [`CHANNELS`] until `stop` is set or `changes` is closed, reconnecting with
/// backoff (100 ms doubling to 5 s). Blocking: run it on a thread of its own.
pub fn listen(
    url: &str,
    changes: &tokio::sync::mpsc::UnboundedSender<Changed>,
    stop: &Arc<AtomicBool>,
) {
    let redacted = redact(url);
    let Ok(config) = config(url) else {
        tracing::error!(url = %redacted, "replica wake-ups: unusable database URL");
        return;
    };
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) && !changes.is_closed() {
        let mut client = match config.connect(NoTls) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(url = %redacted, %error, retry_in_ms = backoff.as_millis(), "replica wake-ups: cannot connect");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(error) = client.batch_execute(&format!("LISTEN {CHANNELS}")) {
            tracing::warn!(url = %redacted, %error, "replica wake-ups: LISTEN failed");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::info!(url = %redacted, channel = CHANNELS, "replica wake-ups: listening");
        // Whatever changed while we were not listening.
        if changes.send(None).is_err() {
            return;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let next = client
                .notifications()
                .timeout_iter(Duration::from_secs(1))
                .next();
            match next {
                Ok(Some(notification)) => {
                    let payload = notification.payload();
                    let change = (payload != EVERYTHING).then(|| payload.to_owned());
                    if changes.send(change).is_err() {
                        return;
                    }
                }
                Ok(None) if client.is_closed() => {
                    tracing::warn!(url = %redacted, "replica wake-ups: connection closed; reconnecting");
                    break;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(url = %redacted, %error, "replica wake-ups: connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
