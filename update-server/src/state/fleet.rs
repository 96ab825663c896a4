//! The fleet: the inventory of workers, registration, update reports (which may trigger
//! auto-halt, see [`super::channels`]) and the admin views of them.

use std::collections::{BTreeMap, HashMap};

use manifests::{Timestamp, Version};

use super::channels::summary;
use super::labels;
use super::{now, parse_version, read_lock, require_nonempty, App};
use crate::api::{ChannelSummary, RegisterRequest, ReportRequest};
use crate::error::{Error, Result, REPORT_OUTCOMES};
use crate::store::{AuditFilter, AuditRecord, ReportRecord, Store, StoreResult, WorkerRecord};

/// How often a worker's `last_seen` is written when nothing else about it changed.
pub(super) const INVENTORY_WRITE_INTERVAL_SECS: i64 = 300;

/// A worker as last seen.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    /// Running version (the console's views read it).
    pub(super) version: String,
    /// Target triple.
    pub(super) platform: String,
    /// Channel followed.
    pub(super) channel: String,
    /// Unix seconds of the last request (retention reads it).
    pub(super) last_seen: i64,
    /// Unix seconds of the last write to the store.
    last_written: i64,
}

/// The stored inventory, as of `now_secs`.
pub(super) fn load_inventory(
    store: &dyn Store,
    now_secs: i64,
) -> StoreResult<HashMap<String, Seen>> {
    Ok(store
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
        .collect())
}

impl App {
    /// Records that a worker was seen; writes to the store only when something changed or the
    /// last write is old (so a poll does not cost a write).
    pub async fn record_seen(
        &self,
        worker_id: &str,
        version: &str,
        platform: &str,
        channel: &str,
        registration: Option<(&str, &[String])>,
    ) -> Result<()> {
        if let Some(record) = self.sighting(worker_id, version, platform, channel, registration) {
            self.db(move |store| store.upsert_worker(&record)).await?;
        }
        Ok(())
    }

    /// Updates the in-memory inventory with a sighting; returns the record to write when the
    /// store must learn of it (a registration, a change, or the last write is old).
    pub(super) fn sighting(
        &self,
        worker_id: &str,
        version: &str,
        platform: &str,
        channel: &str,
        registration: Option<(&str, &[String])>,
    ) -> Option<WorkerRecord> {
        let now_secs = now().unix();
        let mut inventory = self
            .inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up by `&str` first: a known worker's poll allocates nothing here.
        let entry = match inventory.get_mut(worker_id) {
            Some(entry) => entry,
            None => inventory
                .entry(worker_id.to_owned())
                .or_insert_with(|| Seen {
                    version: String::new(),
                    platform: String::new(),
                    channel: String::new(),
                    last_seen: now_secs,
                    last_written: i64::MIN,
                }),
        };
        let changed =
            entry.version != version || entry.platform != platform || entry.channel != channel;
        entry.last_seen = now_secs;
        let must_write = registration.is_some()
            || changed
            || now_secs - entry.last_written >= INVENTORY_WRITE_INTERVAL_SECS;
        if !must_write {
            return None;
        }
        version.clone_into(&mut entry.version);
        platform.clone_into(&mut entry.platform);
        channel.clone_into(&mut entry.channel);
        entry.last_written = now_secs;
        let (hostname, task_types) = registration.unwrap_or(("", &[]));
        Some(WorkerRecord {
            worker_id: worker_id.to_owned(),
            version: version.to_owned(),
            platform: platform.to_owned(),
            channel: channel.to_owned(),
            hostname: hostname.to_owned(),
            task_types: serde_json::to_string(task_types).unwrap_or_else(|_| "[]".to_owned()),
            last_seen: now_secs,
        })
    }

    /// The handshake answer for a worker.
    pub async fn register(&self, request: RegisterRequest) -> Result<serde_json::Value> {
        let current = parse_version("current_version", &request.current_version)?;
        require_nonempty("worker_id", &request.worker_id)?;
        require_nonempty("channel", &request.channel)?;
        require_nonempty("platform", &request.platform)?;
        self.require_channel(&request.channel)?;
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

    /// Stores an update report that counts ([`App::report_counted`]).
    pub async fn report(&self, request: ReportRequest) -> Result<()> {
        self.report_counted(request, true).await
    }

    /// Stores an update report and, when it `counts` (see [`App::report_counts`]), counts it
    /// towards auto-halt and the stable gate, halting the channel when its release fails too
    /// often.
    pub async fn report_counted(&self, request: ReportRequest, counts: bool) -> Result<()> {
        if !REPORT_OUTCOMES.contains(&request.outcome.as_str()) {
            return Err(Error::UnknownOutcome {
                worker_id: request.worker_id,
                outcome: request.outcome,
            });
        }
        require_nonempty("worker_id", &request.worker_id)?;
        parse_version("to_version", &request.to_version)?;
        let at: Timestamp = request
            .at
            .parse()
            .map_err(|source| Error::InvalidReportTime {
                worker_id: request.worker_id.clone(),
                source: Box::new(source),
            })?;
        let channel = match &request.channel {
            Some(channel) => channel.clone(),
            None => self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&request.worker_id)
                .map(|seen| seen.channel.clone())
                .ok_or_else(|| Error::UnknownWorkerChannel {
                    worker_id: request.worker_id.clone(),
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
            counted: counts,
        };
        self.db(move |store| store.add_report(&record)).await?;
        self.metrics
            .update_reports
            .with_label_values(&[
                &request.outcome,
                labels::reason_label(&request.reason),
                &self.known_labels().version(&request.to_version),
            ])
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
            counted = counts,
            "update report"
        );
        if counts
            && matches!(request.outcome.as_str(), "failure" | "rolled_back")
            && manifests::FailureReason::label_is_release_defect(&request.reason)
        {
            self.consider_auto_halt(&channel, &request.to_version)
                .await?;
        }
        Ok(())
    }
    /// Admin status.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let channels: Vec<ChannelSummary> = read_lock(&self.views)
            .iter()
            .map(|(name, view)| summary(self, name, view))
            .collect();
        let stale_after = i64::try_from(self.config.stale_after.as_secs()).unwrap_or(i64::MAX);
        let now_secs = now().unix();
        let mut fleet: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut workers = Vec::new();
        let total = {
            let inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (worker_id, seen) in inventory.iter() {
                // The console's per-worker drill-down (its last outcome is in the audit).
                workers.push(serde_json::json!({
                    "worker_id": worker_id, "channel": seen.channel, "version": seen.version,
                    "platform": seen.platform,
                    "last_seen": Timestamp::from_unix(seen.last_seen).map(|t| t.to_string()),
                    "stale": now_secs - seen.last_seen > stale_after,
                }));
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
        workers.sort_by(|a, b| a["worker_id"].as_str().cmp(&b["worker_id"].as_str()));
        let failures = self
            .db(move |store| store.failures_since(now_secs - 3600))
            .await?;
        let untrusted: Vec<serde_json::Value> = read_lock(&self.releases)
            .values()
            .filter_map(|r| {
                r.untrusted
                    .as_ref()
                    .map(|why| serde_json::json!({"version": r.record.version, "problem": why}))
            })
            .collect();
        Ok(serde_json::json!({
            "root_version": self.root_version(),
            "channels": channels,
            "untrusted_releases": untrusted,
            "fleet": fleet.into_iter().map(|((channel, version), (workers, stale))| serde_json::json!({
                "channel": channel, "version": version, "workers": workers, "stale": stale,
            })).collect::<Vec<_>>(),
            "failures_last_hour": failures.into_iter().map(|f| serde_json::json!({
                "channel": f.channel, "version": f.version, "outcome": f.outcome, "reason": f.reason, "count": f.count,
            })).collect::<Vec<_>>(),
            "workers_total": total,
            "workers": workers,
        }))
    }

    /// Recent audit entries and reports, newest first.
    pub async fn audit(&self, filter: AuditFilter) -> Result<serde_json::Value> {
        let entries = self.db(move |store| store.audit(&filter)).await?;
        Ok(serde_json::json!({
            "entries": entries.into_iter().map(|e| serde_json::json!({
                "at": Timestamp::from_unix(e.at).map(|t| t.to_string()),
                "kind": e.kind, "actor": e.actor, "channel": e.channel, "version": e.version, "detail": e.detail,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Forgets a decommissioned worker: out of the inventory (memory and store, audited), so
    /// it no longer counts in the fleet gauges and their stale-worker alerts. Its reports stay
    /// (they are the history of the releases it tried); a worker that polls again reappears.
    pub async fn forget_worker(&self, worker_id: &str, actor: &str) -> Result<()> {
        let audit = AuditRecord {
            at: now().unix(),
            kind: "worker_forget".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: String::new(),
            detail: format!("worker {worker_id} forgotten"),
        };
        let id = worker_id.to_owned();
        let stored = self
            .db(move |store| store.forget_worker(&id, &audit))
            .await?;
        let known = self
            .inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(worker_id)
            .is_some();
        // Its credential goes with it: a forgotten worker must enrol again to be served.
        let enrolled = self.revoke_credential(worker_id).await?;
        if !(stored || known || enrolled) {
            return Err(Error::UnknownWorker {
                worker_id: worker_id.to_owned(),
            });
        }
        tracing::info!(%worker_id, %actor, "worker forgotten");
        Ok(())
    }

    /// Updates the fleet gauges from the inventory (called before each scrape).
    pub fn refresh_fleet_metrics(&self) {
        let stale_after = i64::try_from(self.config.stale_after.as_secs()).unwrap_or(i64::MAX);
        let now_secs = now().unix();
        let mut fresh: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut stale: BTreeMap<String, i64> = BTreeMap::new();
        let known = self.known_labels();
        {
            let inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for seen in inventory.values() {
                let channel = known.channel(&seen.channel);
                if now_secs - seen.last_seen > stale_after {
                    *stale.entry(channel.clone()).or_default() += 1;
                } else {
                    *fresh
                        .entry((known.version(&seen.version), channel.clone()))
                        .or_default() += 1;
                }
                stale.entry(channel).or_default();
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
}
