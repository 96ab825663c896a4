//! Retention: update reports older than `--report-retention` and workers not seen for
//! `--worker-retention` are deleted (not marked: a worker that comes back registers again), so
//! the store and the inventory stop growing with the fleet's history. Run at start and every
//! `--prune-interval` by [`crate::run`].

use super::{now, App};
use crate::error::Result;

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Reports deleted.
    pub reports: u64,
    /// Workers forgotten.
    pub workers: u64,
}

impl App {
    /// Deletes the reports and workers past their retention.
    pub async fn prune(&self) -> Result<Pruned> {
        let now_secs = now().unix();
        let age = |retention: std::time::Duration| {
            now_secs.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX))
        };
        let (reports_before, workers_before) = (
            age(self.config.report_retention),
            age(self.config.worker_retention),
        );
        // The inventory holds every stored worker, with a fresher `last_seen` than the store
        // (written through every few minutes only), so it decides who is gone.
        let forget: Vec<String> = {
            let mut inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone: Vec<String> = inventory
                .iter()
                .filter(|(_, seen)| seen.last_seen < workers_before)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &gone {
                inventory.remove(id);
            }
            gone
        };
        let workers = u64::try_from(forget.len()).unwrap_or(u64::MAX);
        let reports = self
            .db(move |store| store.prune(reports_before, &forget))
            .await?;
        let pruned = Pruned { reports, workers };
        if pruned != Pruned::default() {
            tracing::info!(
                reports = pruned.reports,
                workers = pruned.workers,
                report_retention_s = self.config.report_retention.as_secs(),
                worker_retention_s = self.config.worker_retention.as_secs(),
                "retention: deleted old reports and workers not seen"
            );
        }
        Ok(pruned)
    }
}
