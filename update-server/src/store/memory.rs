//! An in-memory [`Store`] for the unit tests of the server's logic ([`crate::state`]): the same
//! contract as [`crate::sqlite::SqliteStore`] (each change applied whole, reports counted by
//! distinct worker), kept in maps instead of a database file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    AuditFilter, AuditRecord, ChannelRecord, ChannelWrite, CredentialRecord, EnrolStore,
    EnrollTokenRecord, FailureGroup, OutcomeCounts, OutcomeQuery, PutRelease, ReleaseRecord,
    ReportRecord, Store, StoreError, StoreResult, WorkerRecord,
};

/// A promotion, for the soak gate.
#[derive(Debug, Clone)]
struct Promotion {
    channel: String,
    version: String,
    at: i64,
}

/// Everything stored.
#[derive(Debug, Default)]
struct Contents {
    roots: BTreeMap<u64, Vec<u8>>,
    releases: Vec<ReleaseRecord>,
    artifacts: BTreeMap<String, u64>,
    channels: BTreeMap<String, ChannelRecord>,
    /// Created channels (`canary` and `stable` from the start, as migration 2 makes them).
    channel_names: BTreeSet<String>,
    /// Every signed statement: (channel, serial), in signing order.
    statements: Vec<(String, u64)>,
    promotions: Vec<Promotion>,
    workers: BTreeMap<String, WorkerRecord>,
    reports: Vec<ReportRecord>,
    audit: Vec<AuditRecord>,
    enroll_tokens: BTreeMap<String, EnrollTokenRecord>,
    credentials: BTreeMap<String, CredentialRecord>,
    downloads: BTreeSet<(String, String)>,
}

/// The server's state in memory, lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    contents: Mutex<Contents>,
}

impl MemoryStore {
    /// An empty store, with the channels a new SQLite store starts with.
    pub fn new() -> Self {
        let store = Self::default();
        store.contents().channel_names = ["canary", "stable"].map(str::to_owned).into();
        store
    }

    fn contents(&self) -> MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The serials of every statement signed for `channel`, in signing order.
    pub fn statement_serials(&self, channel: &str) -> Vec<u64> {
        self.contents()
            .statements
            .iter()
            .filter(|(name, _)| name == channel)
            .map(|(_, serial)| *serial)
            .collect()
    }

    /// Moves every promotion of `version` on `channel` `secs` into the past (a soak that has
    /// lasted that much longer).
    pub fn age_promotions(&self, channel: &str, version: &str, secs: i64) {
        for promotion in &mut self.contents().promotions {
            if promotion.channel == channel && promotion.version == version {
                promotion.at -= secs;
            }
        }
    }
}

fn counts_as_tried(report: &ReportRecord, defects: &[&str]) -> bool {
    if !report.counted {
        return false;
    }
    match report.outcome.as_str() {
        "success" => true,
        "failure" | "rolled_back" => defects.contains(&report.reason.as_str()),
        _ => false,
    }
}

impl Store for MemoryStore {
    fn roots(&self) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        Ok(self
            .contents()
            .roots
            .iter()
            .map(|(version, body)| (*version, body.clone()))
            .collect())
    }

    fn add_root(&self, version: u64, body: &[u8], audit: &AuditRecord) -> StoreResult<()> {
        let mut contents = self.contents();
        contents
            .roots
            .entry(version)
            .or_insert_with(|| body.to_vec());
        contents.audit.push(audit.clone());
        Ok(())
    }

    fn put_release(&self, release: &ReleaseRecord, audit: &AuditRecord) -> StoreResult<PutRelease> {
        let mut contents = self.contents();
        let existing = contents
            .releases
            .iter()
            .find(|stored| stored.version == release.version);
        Ok(match existing {
            Some(stored) if stored.manifest_sha256 == release.manifest_sha256 => {
                if stored.body == release.body {
                    PutRelease::Identical
                } else {
                    let version = stored.version.clone();
                    for stored in contents
                        .releases
                        .iter_mut()
                        .filter(|r| r.version == version)
                    {
                        stored.body = release.body.clone();
                    }
                    contents.audit.push(audit.clone());
                    PutRelease::Resigned
                }
            }
            Some(_) => PutRelease::Conflict,
            None => {
                contents.releases.push(release.clone());
                contents.audit.push(audit.clone());
                PutRelease::Inserted
            }
        })
    }

    fn releases(&self) -> StoreResult<Vec<ReleaseRecord>> {
        Ok(self.contents().releases.clone())
    }

    fn add_artifact(&self, sha256: &str, size: u64, _at: i64) -> StoreResult<()> {
        self.contents()
            .artifacts
            .entry(sha256.to_owned())
            .or_insert(size);
        Ok(())
    }

    fn artifacts(&self) -> StoreResult<Vec<(String, u64)>> {
        Ok(self
            .contents()
            .artifacts
            .iter()
            .map(|(sha, size)| (sha.clone(), *size))
            .collect())
    }

    fn channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        Ok(self.contents().channels.values().cloned().collect())
    }

    fn save_channel(&self, change: ChannelWrite<'_>) -> StoreResult<()> {
        let mut contents = self.contents();
        let highest = contents
            .statements
            .iter()
            .filter(|(channel, _)| *channel == change.record.channel)
            .map(|(_, serial)| *serial)
            .max();
        if let Some(stored) = highest.filter(|stored| *stored >= change.serial) {
            return Err(StoreError::SerialConflict {
                channel: change.record.channel.clone(),
                serial: change.serial,
                stored,
            });
        }
        contents
            .channels
            .insert(change.record.channel.clone(), change.record.clone());
        contents
            .statements
            .push((change.record.channel.clone(), change.serial));
        contents.audit.push(change.audit.clone());
        if let Some((version, _percent)) = change.promotion {
            contents.promotions.push(Promotion {
                channel: change.record.channel.clone(),
                version: version.to_owned(),
                at: change.audit.at,
            });
        }
        Ok(())
    }

    fn channel_names(&self) -> StoreResult<Vec<String>> {
        Ok(self.contents().channel_names.iter().cloned().collect())
    }

    fn create_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<bool> {
        let mut contents = self.contents();
        if !contents.channel_names.insert(name.to_owned()) {
            return Ok(false);
        }
        contents.audit.push(audit.clone());
        Ok(true)
    }

    fn delete_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<()> {
        let mut contents = self.contents();
        contents.channel_names.remove(name);
        contents.channels.remove(name);
        contents.audit.push(audit.clone());
        Ok(())
    }

    fn max_serial(&self, channel: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .contents()
            .statements
            .iter()
            .filter(|(name, _)| name == channel)
            .map(|(_, serial)| *serial)
            .max())
    }

    fn first_promotion(&self, channel: &str, version: &str) -> StoreResult<Option<i64>> {
        Ok(self
            .contents()
            .promotions
            .iter()
            .filter(|p| p.channel == channel && p.version == version)
            .map(|p| p.at)
            .min())
    }

    fn upsert_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.contents()
            .workers
            .insert(worker.worker_id.clone(), worker.clone());
        Ok(())
    }

    fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        Ok(self.contents().workers.values().cloned().collect())
    }

    fn channel_workers(&self, channel: &str) -> StoreResult<Vec<WorkerRecord>> {
        Ok(self
            .contents()
            .workers
            .values()
            .filter(|w| w.channel == channel)
            .cloned()
            .collect())
    }

    fn add_report(&self, report: &ReportRecord) -> StoreResult<()> {
        self.contents().reports.push(report.clone());
        Ok(())
    }

    fn prune(&self, reports_received_before: i64, forget_workers: &[String]) -> StoreResult<u64> {
        let mut contents = self.contents();
        let before = contents.reports.len();
        contents
            .reports
            .retain(|r| r.received_at >= reports_received_before);
        for worker_id in forget_workers {
            contents.workers.remove(worker_id);
        }
        Ok(u64::try_from(before - contents.reports.len()).unwrap_or(u64::MAX))
    }

    fn release_outcomes(&self, query: OutcomeQuery<'_>) -> StoreResult<OutcomeCounts> {
        let contents = self.contents();
        let mut failed = BTreeSet::new();
        let mut succeeded = BTreeSet::new();
        let mut tried = BTreeSet::new();
        for report in contents
            .reports
            .iter()
            .filter(|r| r.channel == query.channel && r.to_version == query.version)
        {
            if !counts_as_tried(report, query.defects) {
                continue;
            }
            tried.insert(report.worker_id.as_str());
            if report.outcome == "success" {
                succeeded.insert(report.worker_id.as_str());
            } else {
                failed.insert(report.worker_id.as_str());
            }
        }
        let count = |set: &BTreeSet<&str>| set.len() as u64;
        Ok(OutcomeCounts {
            failed: count(&failed),
            succeeded: count(&succeeded),
            tried: count(&tried),
        })
    }

    fn tried_workers(&self, query: OutcomeQuery<'_>) -> StoreResult<Vec<String>> {
        let contents = self.contents();
        let tried: BTreeSet<&str> = contents
            .reports
            .iter()
            .filter(|r| {
                r.channel == query.channel
                    && r.to_version == query.version
                    && counts_as_tried(r, query.defects)
            })
            .map(|r| r.worker_id.as_str())
            .collect();
        Ok(tried.into_iter().map(str::to_owned).collect())
    }

    fn channel_reports(&self, channel: &str, limit: usize) -> StoreResult<Vec<ReportRecord>> {
        let contents = self.contents();
        let mut reports: Vec<(usize, &ReportRecord)> = contents
            .reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.channel == channel)
            .collect();
        // Oldest first by reception (then insertion), keeping the newest `limit`.
        reports.sort_by_key(|(i, r)| (r.received_at, *i));
        let skip = reports.len().saturating_sub(limit);
        Ok(reports
            .into_iter()
            .skip(skip)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn failures_since(&self, since: i64) -> StoreResult<Vec<FailureGroup>> {
        let mut groups: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
        for report in self.contents().reports.iter().filter(|r| {
            r.received_at >= since && matches!(r.outcome.as_str(), "failure" | "rolled_back")
        }) {
            *groups
                .entry((
                    report.channel.clone(),
                    report.to_version.clone(),
                    report.outcome.clone(),
                    report.reason.clone(),
                ))
                .or_default() += 1;
        }
        let mut groups: Vec<FailureGroup> = groups
            .into_iter()
            .map(
                |((channel, version, outcome, reason), count)| FailureGroup {
                    channel,
                    version,
                    outcome,
                    reason,
                    count,
                },
            )
            .collect();
        groups.sort_by_key(|group| std::cmp::Reverse(group.count));
        Ok(groups)
    }

    fn add_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        self.contents().audit.push(audit.clone());
        Ok(())
    }

    fn forget_worker(&self, worker_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        let mut contents = self.contents();
        if contents.workers.remove(worker_id).is_none() {
            return Ok(false);
        }
        contents.audit.push(audit.clone());
        Ok(true)
    }

    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let contents = self.contents();
        let reports = contents.reports.iter().map(|r| AuditRecord {
            at: r.received_at,
            kind: "report".to_owned(),
            actor: r.worker_id.clone(),
            channel: r.channel.clone(),
            version: r.to_version.clone(),
            detail: format!(
                "{}{} {}->{} in {} ms (correlation {})",
                r.outcome,
                if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(" {}", r.reason)
                },
                r.from_version,
                r.to_version,
                r.duration_ms,
                r.correlation_id
            ),
        });
        // Newest first; on the same second reports before audit entries, later before earlier.
        let mut entries: Vec<(i64, u8, usize, AuditRecord)> = contents
            .audit
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, a)| (a.at, 0, i, a))
            .chain(reports.enumerate().map(|(i, a)| (a.at, 1, i, a)))
            .collect();
        entries.sort_by_key(|(at, source, index, _)| std::cmp::Reverse((*at, *source, *index)));
        Ok(entries
            .into_iter()
            .map(|e| e.3)
            .filter(|e| filter.admits(e))
            .take(filter.limit)
            .collect())
    }
}

impl EnrolStore for MemoryStore {
    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollTokenRecord>> {
        Ok(self.contents().enroll_tokens.values().cloned().collect())
    }

    fn add_enroll_token(&self, token: &EnrollTokenRecord, audit: &AuditRecord) -> StoreResult<()> {
        let mut contents = self.contents();
        contents
            .enroll_tokens
            .insert(token.id.clone(), token.clone());
        contents.audit.push(audit.clone());
        Ok(())
    }

    fn revoke_enroll_token(&self, id: &str, at: i64, audit: &AuditRecord) -> StoreResult<()> {
        let mut contents = self.contents();
        if let Some(token) = contents.enroll_tokens.get_mut(id) {
            token.revoked_at.get_or_insert(at);
        }
        contents.audit.push(audit.clone());
        Ok(())
    }

    fn credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        Ok(self.contents().credentials.values().cloned().collect())
    }

    fn enrol(&self, credential: &CredentialRecord, audit: &AuditRecord) -> StoreResult<()> {
        let mut contents = self.contents();
        if let Some(token) = contents.enroll_tokens.get_mut(&credential.token_id) {
            token.uses += 1;
        }
        contents
            .credentials
            .insert(credential.worker_id.clone(), credential.clone());
        contents.audit.push(audit.clone());
        Ok(())
    }

    fn revoke_credential(&self, worker_id: &str, at: i64) -> StoreResult<bool> {
        Ok(self
            .contents()
            .credentials
            .get_mut(worker_id)
            .filter(|c| c.revoked_at.is_none())
            .map(|c| c.revoked_at = Some(at))
            .is_some())
    }

    fn record_download(&self, worker_id: &str, sha256: &str, _at: i64) -> StoreResult<()> {
        self.contents()
            .downloads
            .insert((worker_id.to_owned(), sha256.to_owned()));
        Ok(())
    }

    fn downloaded_any(&self, worker_id: &str, sha256s: &[String]) -> StoreResult<bool> {
        let contents = self.contents();
        Ok(sha256s.iter().any(|sha| {
            contents
                .downloads
                .contains(&(worker_id.to_owned(), sha.clone()))
        }))
    }
}
