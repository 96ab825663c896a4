//! Write-behind of the inventory for `/latest`: a poll is answered from memory and never waits
//! on the store (no database round-trip on the fleet's hot path, a 304 above all). A sighting the
//! store must learn of (a new worker, a changed version, channel or platform, or the periodic
//! `last_seen` refresh of `fleet::record_seen`) is queued here, keyed by worker (the newest
//! sighting wins), and written by one background task in batches; a failed batch is queued
//! again (unless newer sightings replaced it) and retried after [`RETRY_PAUSE`].
//!
//! What a `kill -9` can lose is the queue: sightings of the last moment, never an acknowledged
//! change (a poll acknowledges nothing). The next poll of each of those workers writes again,
//! since the inventory loaded at start holds what the store held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::App;
use crate::store::WorkerRecord;

/// How long a failed batch waits before it is written again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The sightings waiting for the store.
#[derive(Debug, Default)]
pub(super) struct Sightings {
    /// By worker id: the newest record of each.
    pending: Mutex<HashMap<String, WorkerRecord>>,
    /// Whether the writer task runs (set and cleared under `pending`'s lock).
    writing: AtomicBool,
}

impl App {
    /// Records that a worker polled, in memory; a write the store is due (see
    /// [`App::record_seen`]) is queued for the background writer, not awaited.
    pub fn note_seen(
        self: &Arc<Self>,
        worker_id: &str,
        version: &str,
        platform: &str,
        channel: &str,
    ) {
        let Some(record) = self.sighting(worker_id, version, platform, channel, None) else {
            return;
        };
        let start = {
            let mut pending = self
                .sightings
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            pending.insert(record.worker_id.clone(), record);
            !self.sightings.writing.swap(true, Ordering::SeqCst)
        };
        if start {
            let app = self.clone();
            tokio::spawn(async move { app.write_sightings().await });
        }
    }

    /// Writes queued sightings until none is left.
    async fn write_sightings(self: Arc<Self>) {
        loop {
            let batch: Arc<Vec<WorkerRecord>> = {
                let mut pending = self
                    .sightings
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if pending.is_empty() {
                    self.sightings.writing.store(false, Ordering::SeqCst);
                    return;
                }
                Arc::new(pending.drain().map(|(_, record)| record).collect())
            };
            let records = batch.clone();
            let written = self
                .db(move |store| {
                    for record in records.iter() {
                        store.upsert_worker(record)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(error) = written {
                tracing::warn!(%error, workers = batch.len(), retry_in_ms = RETRY_PAUSE.as_millis(), "inventory sightings not written; retrying");
                {
                    let mut pending = self
                        .sightings
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    for record in batch.iter() {
                        pending
                            .entry(record.worker_id.clone())
                            .or_insert_with(|| record.clone());
                    }
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
