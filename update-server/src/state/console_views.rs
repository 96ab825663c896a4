//! The console's read views that `GET /api/admin/status` does not carry: a channel's rollout
//! progress over time, replayed from the stored reports, the inventory and the audit trail
//! (`GET /api/admin/channels/{channel}/history`), and the inventory page by page
//! (`GET /api/admin/workers`). Nothing here writes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use manifests::{Timestamp, Version};
use serde::Serialize;

use super::{now, App};
use crate::error::Result;
use crate::store::{AuditFilter, AuditRecord, ReportRecord};

/// Most reports one history replays: the newest ones (the first point then stands for the
/// state before them, as far as their `from_version`s tell).
pub const HISTORY_REPORTS: usize = 20_000;
/// At most this many entries of each channel action are shown on a history.
const HISTORY_EVENTS_PER_KIND: usize = 200;
/// The audit kinds that change what a channel offers: its events on the progress chart.
pub const CHANNEL_ACTIONS: &[&str] = &[
    "promote",
    "halt",
    "resume",
    "rollback",
    "auto_halt",
    "resign",
];
/// The default and the largest page of [`App::workers_page`].
pub const WORKERS_PAGE_DEFAULT: usize = 100;
/// See [`WORKERS_PAGE_DEFAULT`].
pub const WORKERS_PAGE_MAX: usize = 1_000;

/// How many workers of the channel ran each version from `at` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// RFC 3339 UTC.
    pub at: String,
    /// Version to workers (versions with no worker are left out).
    pub workers: BTreeMap<String, u64>,
}

/// A channel action on the history (a promotion with its rollout %, a halt, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistoryEvent {
    /// RFC 3339 UTC.
    pub at: String,
    /// `promote`, `halt`, `resume`, `rollback`, `auto_halt` or `resign`.
    pub kind: String,
    /// Who (token name, `auto-halt`, `server`).
    pub actor: String,
    /// The version the channel offered after it.
    pub version: String,
    /// The rollout % a promotion set (100 for a rollback), when it says.
    pub percent: Option<u8>,
    /// The audit entry's text.
    pub detail: String,
}

/// `GET /api/admin/channels/{channel}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChannelHistory {
    /// The channel.
    pub channel: String,
    /// Every version in `points`, lowest first.
    pub versions: Vec<String>,
    /// Oldest first; the last one is now, from the inventory.
    pub points: Vec<HistoryPoint>,
    /// Channel actions, oldest first.
    pub events: Vec<HistoryEvent>,
    /// How many reports were replayed.
    pub reports: usize,
    /// Older reports than the replayed ones exist (only the newest [`HISTORY_REPORTS`] are).
    pub truncated: bool,
}

/// One worker of `GET /api/admin/workers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkerRow {
    /// Stable id.
    pub worker_id: String,
    /// Channel followed.
    pub channel: String,
    /// Running version.
    pub version: String,
    /// Target triple.
    pub platform: String,
    /// RFC 3339 UTC of its last request.
    pub last_seen: Option<String>,
    /// Not seen for longer than `--stale-after`.
    pub stale: bool,
}

/// `GET /api/admin/workers?offset=&limit=&channel=&version=`: one page of the inventory, by
/// worker id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WorkersPage {
    /// Workers that pass the filters (on every page).
    pub total: usize,
    /// Index of the first worker of this page.
    pub offset: usize,
    /// Page size asked for (after clamping to 1..=[`WORKERS_PAGE_MAX`]).
    pub limit: usize,
    /// The offset of the next page, absent on the last one.
    pub next_offset: Option<usize>,
    /// This page.
    pub workers: Vec<WorkerRow>,
}

/// Which workers [`App::workers_page`] lists.
#[derive(Debug, Clone, Default)]
pub struct WorkersQuery {
    /// First index (0-based, in worker id order).
    pub offset: usize,
    /// Page size (clamped to 1..=[`WORKERS_PAGE_MAX`]; default [`WORKERS_PAGE_DEFAULT`]).
    pub limit: Option<usize>,
    /// Only workers following this channel.
    pub channel: Option<String>,
    /// Only workers running this version.
    pub version: Option<String>,
    /// Only this worker (the console's drill-down).
    pub worker_id: Option<String>,
}

fn rfc3339(unix: i64) -> String {
    Timestamp::from_unix(unix).map_or_else(|| unix.to_string(), |t| t.to_string())
}

/// The rollout % of a `promote` audit entry, whose detail `channels.rs` writes as
/// `serial N: <version> at <percent>%...`; a rollback always goes to 100 %.
fn action_percent(entry: &AuditRecord) -> Option<u8> {
    match entry.kind.as_str() {
        "rollback" => Some(100),
        "promote" => {
            let (_, rest) = entry.detail.split_once(" at ")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with('%')
                .then(|| digits.parse().ok())
                .flatten()
        }
        _ => None,
    }
}

/// Versions lowest first (by semantic-version precedence; anything unparsable after).
fn by_precedence(a: &str, b: &str) -> Ordering {
    match (a.parse::<Version>(), b.parse::<Version>()) {
        (Ok(x), Ok(y)) => x.cmp_precedence(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Replays `reports` (oldest first) over the workers' versions. A worker's version before its
/// first replayed report is that report's `from_version`; a worker with no report runs its
/// inventory version throughout. A `success` moves it to `to_version`; any other outcome
/// (failure, rollback, deferral) leaves it on `from_version`. The last point, at `now_secs`, is
/// the inventory itself (a forgotten worker or one that moved channel drops out there).
fn replay(
    reports: &[ReportRecord],
    inventory: &HashMap<String, String>,
    first_event: Option<i64>,
    now_secs: i64,
) -> Vec<(i64, BTreeMap<String, u64>)> {
    let mut running: HashMap<&str, &str> = HashMap::new();
    for report in reports {
        running
            .entry(report.worker_id.as_str())
            .or_insert(report.from_version.as_str());
    }
    for (worker, version) in inventory {
        running.entry(worker.as_str()).or_insert(version.as_str());
    }
    let counts = |running: &HashMap<&str, &str>| {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for version in running.values() {
            *counts.entry((*version).to_owned()).or_default() += 1;
        }
        counts
    };
    let start = reports
        .first()
        .map(|r| r.received_at)
        .into_iter()
        .chain(first_event)
        .min()
        .unwrap_or(now_secs)
        .min(now_secs);
    let mut points = vec![(start, counts(&running))];
    for report in reports {
        let version = if report.outcome == "success" {
            report.to_version.as_str()
        } else {
            report.from_version.as_str()
        };
        running.insert(report.worker_id.as_str(), version);
        let point = (report.received_at, counts(&running));
        match points.last_mut() {
            // One point per second: the later state of that second wins.
            Some(last) if last.0 == point.0 => *last = point,
            _ => points.push(point),
        }
    }
    let mut now_counts: BTreeMap<String, u64> = BTreeMap::new();
    for version in inventory.values() {
        *now_counts.entry(version.clone()).or_default() += 1;
    }
    match points.last_mut() {
        Some(last) if last.0 >= now_secs => *last = (now_secs, now_counts),
        _ => points.push((now_secs, now_counts)),
    }
    points
}

impl App {
    /// How many workers of `channel` ran each version over time, with the channel's actions.
    pub async fn channel_history(&self, channel: &str) -> Result<ChannelHistory> {
        self.require_channel(channel)?;
        let name = channel.to_owned();
        let (reports, events) = self
            .db(move |store| {
                // One more than replayed tells whether older ones exist.
                let reports = store.channel_reports(&name, HISTORY_REPORTS + 1)?;
                let mut events = Vec::new();
                for kind in CHANNEL_ACTIONS {
                    events.extend(store.audit(&AuditFilter {
                        limit: HISTORY_EVENTS_PER_KIND,
                        channel: Some(name.clone()),
                        kind: Some((*kind).to_owned()),
                        ..AuditFilter::default()
                    })?);
                }
                Ok((reports, events))
            })
            .await?;
        let truncated = reports.len() > HISTORY_REPORTS;
        let reports = &reports[reports.len().saturating_sub(HISTORY_REPORTS)..];
        let inventory: HashMap<String, String> = self
            .inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, seen)| seen.channel == channel)
            .map(|(id, seen)| (id.clone(), seen.version.clone()))
            .collect();
        let mut events = events;
        events.sort_by_key(|e| e.at);
        let points = replay(
            reports,
            &inventory,
            events.first().map(|e| e.at),
            now().unix(),
        );
        let mut versions: Vec<String> = points
            .iter()
            .flat_map(|(_, counts)| counts.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        versions.sort_by(|a, b| by_precedence(a, b));
        Ok(ChannelHistory {
            channel: channel.to_owned(),
            versions,
            points: points
                .into_iter()
                .map(|(at, workers)| HistoryPoint {
                    at: rfc3339(at),
                    workers,
                })
                .collect(),
            events: events
                .into_iter()
                .map(|e| HistoryEvent {
                    at: rfc3339(e.at),
                    percent: action_percent(&e),
                    kind: e.kind,
                    actor: e.actor,
                    version: e.version,
                    detail: e.detail,
                })
                .collect(),
            reports: reports.len(),
            truncated,
        })
    }

    /// One page of the inventory, in worker id order.
    pub fn workers_page(&self, query: &WorkersQuery) -> WorkersPage {
        let limit = query
            .limit
            .unwrap_or(WORKERS_PAGE_DEFAULT)
            .clamp(1, WORKERS_PAGE_MAX);
        let stale_after = i64::try_from(self.config.stale_after.as_secs()).unwrap_or(i64::MAX);
        let now_secs = now().unix();
        let mut rows: Vec<WorkerRow> = {
            let inventory = self
                .inventory
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            inventory
                .iter()
                .filter(|(id, seen)| {
                    query.channel.as_ref().is_none_or(|c| *c == seen.channel)
                        && query.version.as_ref().is_none_or(|v| *v == seen.version)
                        && query.worker_id.as_ref().is_none_or(|w| *w == **id)
                })
                .map(|(id, seen)| WorkerRow {
                    worker_id: id.clone(),
                    channel: seen.channel.clone(),
                    version: seen.version.clone(),
                    platform: seen.platform.clone(),
                    last_seen: Timestamp::from_unix(seen.last_seen).map(|t| t.to_string()),
                    stale: now_secs - seen.last_seen > stale_after,
                })
                .collect()
        };
        rows.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        let total = rows.len();
        let workers: Vec<WorkerRow> = rows.into_iter().skip(query.offset).take(limit).collect();
        let end = query.offset.saturating_add(workers.len());
        WorkersPage {
            total,
            offset: query.offset,
            limit,
            next_offset: (end < total).then_some(end),
            workers,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn report(worker: &str, from: &str, to: &str, outcome: &str, at: i64) -> ReportRecord {
        ReportRecord {
            worker_id: worker.to_owned(),
            channel: "canary".to_owned(),
            correlation_id: format!("c-{worker}-{at}"),
            from_version: from.to_owned(),
            to_version: to.to_owned(),
            outcome: outcome.to_owned(),
            reason: String::new(),
            duration_ms: 1,
            at,
            received_at: at,
            counted: true,
        }
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect()
    }

    /// Successes move a worker, failures and rollbacks leave it where it was, a worker with no
    /// report counts at its inventory version, and the last point is the inventory.
    #[test]
    fn the_replay_counts_workers_per_version_over_time() {
        let reports = [
            report("a", "1.0.0", "1.1.0", "success", 100),
            report("b", "1.0.0", "1.1.0", "rolled_back", 110),
            report("b", "1.0.0", "1.1.0", "success", 120),
            report("c", "1.0.0", "1.1.0", "success", 120),
        ];
        let inventory: HashMap<String, String> = [
            ("a", "1.1.0"),
            ("b", "1.1.0"),
            ("c", "1.1.0"),
            ("d", "1.0.0"),
        ]
        .iter()
        .map(|(w, v)| ((*w).to_owned(), (*v).to_owned()))
        .collect();
        let points = replay(&reports, &inventory, Some(90), 200);
        assert_eq!(
            points,
            vec![
                (90, counts(&[("1.0.0", 4)])),
                (100, counts(&[("1.0.0", 3), ("1.1.0", 1)])),
                (110, counts(&[("1.0.0", 3), ("1.1.0", 1)])),
                (120, counts(&[("1.0.0", 1), ("1.1.0", 3)])),
                (200, counts(&[("1.0.0", 1), ("1.1.0", 3)])),
            ]
        );
        assert_eq!(
            replay(&[], &HashMap::new(), None, 50),
            vec![(50, BTreeMap::new())]
        );
    }

    #[test]
    fn a_promotion_says_its_percent() {
        let entry = |kind: &str, detail: &str| AuditRecord {
            at: 0,
            kind: kind.to_owned(),
            actor: "ops".to_owned(),
            channel: "canary".to_owned(),
            version: "1.4.0".to_owned(),
            detail: detail.to_owned(),
        };
        assert_eq!(
            action_percent(&entry("promote", "serial 3: 1.4.0 at 25%: canary first")),
            Some(25)
        );
        assert_eq!(
            action_percent(&entry("rollback", "serial 4: to 1.3.0")),
            Some(100)
        );
        assert_eq!(
            action_percent(&entry("halt", "serial 5: broken at 10% of hosts")),
            None
        );
        assert_eq!(
            by_precedence("1.10.0", "1.9.0"),
            Ordering::Greater,
            "versions sort by precedence, not as text"
        );
    }
}
