//! The embedded store: one SQLite database in the data directory (WAL, `synchronous=FULL`, so a
//! change is on disk before the request that made it is acknowledged), migrations from
//! `update-server/migrations/` applied in order and tracked with `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

mod enrolment;

use crate::store::{
    AuditFilter, AuditRecord, ChannelRecord, ChannelWrite, FailureGroup, OutcomeCounts,
    OutcomeQuery, PutRelease, ReleaseRecord, ReportRecord, Store, StoreError, StoreResult,
    WorkerRecord,
};

/// Migrations, in order; the position + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_channel_names.sql"),
    include_str!("../migrations/0003_enrolment.sql"),
    include_str!("../migrations/0004_rollout_plans.sql"),
    include_str!("../migrations/0005_workers_by_channel.sql"),
];

/// The columns [`worker_from_row`] reads, in order.
const WORKER_COLUMNS: &str =
    "worker_id, version, platform, channel, hostname, task_types, last_seen";

fn worker_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkerRecord> {
    Ok(WorkerRecord {
        worker_id: row.get(0)?,
        version: row.get(1)?,
        platform: row.get(2)?,
        channel: row.get(3)?,
        hostname: row.get(4)?,
        task_types: row.get(5)?,
        last_seen: row.get(6)?,
    })
}

/// SQLite implementation of [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) `DIR/update-server.sqlite3`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        let path = data_dir.join("update-server.sqlite3");
        let db_error = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let mut connection = Connection::open(&path).map_err(db_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(db_error)?;
        migrate(&mut connection, &path)?;
        Ok(SqliteStore {
            path,
            connection: Mutex::new(connection),
        })
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut connection).map_err(|source| StoreError::Database {
            path: self.path.clone(),
            source,
        })
    }
}

fn migrate(connection: &mut Connection, path: &Path) -> StoreResult<()> {
    let current: usize = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| StoreError::Database {
            path: path.to_owned(),
            source,
        })?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: current,
            supported: MIGRATIONS.len(),
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        let migration_error = |source| StoreError::Migration {
            path: path.to_owned(),
            version,
            source,
        };
        let tx = connection.transaction().map_err(migration_error)?;
        tx.execute_batch(sql).map_err(migration_error)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
    }
    Ok(())
}

fn insert_audit(connection: &Connection, audit: &AuditRecord) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO audit (at, kind, actor, channel, version, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![audit.at, audit.kind, audit.actor, audit.channel, audit.version, audit.detail],
    )?;
    Ok(())
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Store for SqliteStore {
    fn roots(&self) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT version, body FROM roots ORDER BY version")?;
            let rows = statement.query_map([], |row| Ok((count(row.get(0)?), row.get(1)?)))?;
            rows.collect()
        })
    }

    fn add_root(&self, version: u64, body: &[u8], audit: &AuditRecord) -> StoreResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO roots (version, body, added_at) VALUES (?1, ?2, ?3)",
                params![i64::try_from(version).unwrap_or(i64::MAX), body, audit.at],
            )?;
            insert_audit(&tx, audit)?;
            tx.commit()
        })
    }

    fn put_release(&self, release: &ReleaseRecord, audit: &AuditRecord) -> StoreResult<PutRelease> {
        self.with(|c| {
            let tx = c.transaction()?;
            let existing: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT manifest_sha256, body FROM releases WHERE version = ?1",
                    params![release.version],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let outcome = match existing {
                Some((sha, body)) if sha == release.manifest_sha256 && body == release.body => {
                    PutRelease::Identical
                }
                Some((sha, _)) if sha == release.manifest_sha256 => {
                    tx.execute(
                        "UPDATE releases SET body = ?2 WHERE version = ?1",
                        params![release.version, release.body],
                    )?;
                    insert_audit(&tx, audit)?;
                    PutRelease::Resigned
                }
                Some(_) => PutRelease::Conflict,
                None => {
                    tx.execute(
                        "INSERT INTO releases (version, manifest_sha256, body, published_at) VALUES (?1, ?2, ?3, ?4)",
                        params![release.version, release.manifest_sha256, release.body, release.published_at],
                    )?;
                    insert_audit(&tx, audit)?;
                    PutRelease::Inserted
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn releases(&self) -> StoreResult<Vec<ReleaseRecord>> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT version, manifest_sha256, body, published_at FROM releases ORDER BY published_at")?;
            let rows = statement.query_map([], |row| {
                Ok(ReleaseRecord {
                    version: row.get(0)?,
                    manifest_sha256: row.get(1)?,
                    body: row.get(2)?,
                    published_at: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    fn add_artifact(&self, sha256: &str, size: u64, at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO artifacts (sha256, size, stored_at) VALUES (?1, ?2, ?3)",
                params![sha256, i64::try_from(size).unwrap_or(i64::MAX), at],
            )?;
            Ok(())
        })
    }

    fn artifacts(&self) -> StoreResult<Vec<(String, u64)>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT sha256, size FROM artifacts")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, count(row.get(1)?))))?;
            rows.collect()
        })
    }

    fn channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        self.with(|c| {
            let mut statement =
                c.prepare("SELECT channel, statement, rollback, halt_reason, plan FROM channels")?;
            let rows = statement.query_map([], |row| {
                Ok(ChannelRecord {
                    channel: row.get(0)?,
                    statement: row.get(1)?,
                    rollback: row.get(2)?,
                    halt_reason: row.get(3)?,
                    plan: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    fn save_channel(&self, change: ChannelWrite<'_>) -> StoreResult<()> {
        let serial = i64::try_from(change.serial).unwrap_or(i64::MAX);
        let stored = self.with(|c| {
            // IMMEDIATE: the serial check and the write are one step, whoever else writes.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let highest: Option<i64> = tx.query_row(
                "SELECT MAX(serial) FROM statements WHERE channel = ?1",
                params![change.record.channel],
                |row| row.get(0),
            )?;
            if let Some(highest) = highest.filter(|highest| *highest >= serial) {
                return Ok(Some(highest));
            }
            tx.execute(
                "INSERT INTO channels (channel, statement, rollback, halt_reason, updated_at, plan)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (channel) DO UPDATE SET statement = excluded.statement,
                   rollback = excluded.rollback, halt_reason = excluded.halt_reason,
                   updated_at = excluded.updated_at, plan = excluded.plan",
                params![change.record.channel, change.record.statement, change.record.rollback, change.record.halt_reason, change.audit.at, change.record.plan],
            )?;
            tx.execute(
                "INSERT INTO statements (channel, serial, body, signed_at) VALUES (?1, ?2, ?3, ?4)",
                params![change.record.channel, serial, change.record.statement, change.audit.at],
            )?;
            insert_audit(&tx, change.audit)?;
            if let Some((version, percent)) = change.promotion {
                tx.execute(
                    "INSERT INTO promotions (channel, version, percent, at) VALUES (?1, ?2, ?3, ?4)",
                    params![change.record.channel, version, percent, change.audit.at],
                )?;
            }
            tx.commit()?;
            Ok(None)
        })?;
        match stored {
            None => Ok(()),
            Some(highest) => Err(StoreError::SerialConflict {
                channel: change.record.channel.clone(),
                serial: change.serial,
                stored: u64::try_from(highest).unwrap_or(0),
            }),
        }
    }

    fn channel_names(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let mut statement = c.prepare("SELECT name FROM channel_names ORDER BY name")?;
            let rows = statement.query_map([], |row| row.get(0))?;
            rows.collect()
        })
    }

    fn create_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO channel_names (name, created_at) VALUES (?1, ?2)",
                params![name, audit.at],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            insert_audit(&tx, audit)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn delete_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM channel_names WHERE name = ?1", params![name])?;
            tx.execute("DELETE FROM channels WHERE channel = ?1", params![name])?;
            insert_audit(&tx, audit)?;
            tx.commit()
        })
    }

    fn max_serial(&self, channel: &str) -> StoreResult<Option<u64>> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX(serial) FROM statements WHERE channel = ?1",
                params![channel],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|serial| serial.map(count))
        })
    }

    fn first_promotion(&self, channel: &str, version: &str) -> StoreResult<Option<i64>> {
        self.with(|c| {
            c.query_row(
                "SELECT MIN(at) FROM promotions WHERE channel = ?1 AND version = ?2",
                params![channel, version],
                |row| row.get(0),
            )
        })
    }

    fn upsert_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO workers (worker_id, version, platform, channel, hostname, task_types, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (worker_id) DO UPDATE SET version = excluded.version,
                   platform = excluded.platform, channel = excluded.channel,
                   hostname = CASE WHEN excluded.hostname = '' THEN workers.hostname ELSE excluded.hostname END,
                   task_types = CASE WHEN excluded.task_types = '[]' THEN workers.task_types ELSE excluded.task_types END,
                   last_seen = excluded.last_seen",
                params![
                    worker.worker_id,
                    worker.version,
                    worker.platform,
                    worker.channel,
                    worker.hostname,
                    worker.task_types,
                    worker.last_seen
                ],
            )?;
            Ok(())
        })
    }

    fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!("SELECT {WORKER_COLUMNS} FROM workers"))?;
            let rows = statement.query_map([], worker_from_row)?;
            rows.collect()
        })
    }

    fn channel_workers(&self, channel: &str) -> StoreResult<Vec<WorkerRecord>> {
        self.with(|c| {
            let mut statement = c.prepare(&format!(
                "SELECT {WORKER_COLUMNS} FROM workers WHERE channel = ?1"
            ))?;
            let rows = statement.query_map([channel], worker_from_row)?;
            rows.collect()
        })
    }

    fn add_report(&self, report: &ReportRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO reports (worker_id, channel, correlation_id, from_version, to_version, outcome,
                                      reason, duration_ms, at, received_at, counted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    report.worker_id,
                    report.channel,
                    report.correlation_id,
                    report.from_version,
                    report.to_version,
                    report.outcome,
                    report.reason,
                    report.duration_ms,
                    report.at,
                    report.received_at,
                    report.counted
                ],
            )?;
            Ok(())
        })
    }

    fn release_outcomes(&self, query: OutcomeQuery<'_>) -> StoreResult<OutcomeCounts> {
        let defects = serde_json::to_string(query.defects).unwrap_or_else(|_| "[]".to_owned());
        self.with(|c| {
            c.query_row(
                "SELECT
                   COUNT(DISTINCT CASE WHEN outcome IN ('failure', 'rolled_back')
                        AND reason IN (SELECT value FROM json_each(?3)) THEN worker_id END),
                   COUNT(DISTINCT CASE WHEN outcome = 'success' THEN worker_id END),
                   COUNT(DISTINCT CASE WHEN outcome = 'success' OR (outcome IN ('failure', 'rolled_back')
                        AND reason IN (SELECT value FROM json_each(?3))) THEN worker_id END)
                 FROM reports WHERE channel = ?1 AND to_version = ?2 AND counted = 1",
                params![query.channel, query.version, defects],
                |row| {
                    Ok(OutcomeCounts {
                        failed: count(row.get(0)?),
                        succeeded: count(row.get(1)?),
                        tried: count(row.get(2)?),
                    })
                },
            )
        })
    }

    fn tried_workers(&self, query: OutcomeQuery<'_>) -> StoreResult<Vec<String>> {
        let defects = serde_json::to_string(query.defects).unwrap_or_else(|_| "[]".to_owned());
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT DISTINCT worker_id FROM reports
                 WHERE channel = ?1 AND to_version = ?2 AND counted = 1
                   AND (outcome = 'success' OR (outcome IN ('failure', 'rolled_back')
                        AND reason IN (SELECT value FROM json_each(?3))))
                 ORDER BY worker_id",
            )?;
            let rows = statement
                .query_map(params![query.channel, query.version, defects], |row| {
                    row.get(0)
                })?;
            rows.collect()
        })
    }

    fn channel_reports(&self, channel: &str, limit: usize) -> StoreResult<Vec<ReportRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT worker_id, channel, correlation_id, from_version, to_version, outcome, reason,
                        duration_ms, at, received_at, counted FROM (
                   SELECT * FROM reports WHERE channel = ?1 ORDER BY received_at DESC, id DESC LIMIT ?2
                 ) ORDER BY received_at ASC, id ASC",
            )?;
            let rows = statement.query_map(params![channel, limit], |row| {
                Ok(ReportRecord {
                    worker_id: row.get(0)?,
                    channel: row.get(1)?,
                    correlation_id: row.get(2)?,
                    from_version: row.get(3)?,
                    to_version: row.get(4)?,
                    outcome: row.get(5)?,
                    reason: row.get(6)?,
                    duration_ms: row.get(7)?,
                    at: row.get(8)?,
                    received_at: row.get(9)?,
                    counted: row.get(10)?,
                })
            })?;
            rows.collect()
        })
    }

    fn failures_since(&self, since: i64) -> StoreResult<Vec<FailureGroup>> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT channel, to_version, outcome, reason, COUNT(*) FROM reports
                 WHERE received_at >= ?1 AND outcome IN ('failure', 'rolled_back')
                 GROUP BY channel, to_version, outcome, reason ORDER BY COUNT(*) DESC",
            )?;
            let rows = statement.query_map(params![since], |row| {
                Ok(FailureGroup {
                    channel: row.get(0)?,
                    version: row.get(1)?,
                    outcome: row.get(2)?,
                    reason: row.get(3)?,
                    count: count(row.get(4)?),
                })
            })?;
            rows.collect()
        })
    }

    fn prune(&self, reports_received_before: i64, forget_workers: &[String]) -> StoreResult<u64> {
        self.with(|c| {
            let transaction = c.transaction()?;
            let reports = transaction.execute(
                "DELETE FROM reports WHERE received_at < ?1",
                params![reports_received_before],
            )?;
            // A download older than every kept report no longer makes any report count.
            transaction.execute(
                "DELETE FROM artifact_downloads WHERE at < ?1",
                params![reports_received_before],
            )?;
            {
                let mut forget = transaction.prepare("DELETE FROM workers WHERE worker_id = ?1")?;
                for worker_id in forget_workers {
                    forget.execute(params![worker_id])?;
                }
            }
            transaction.commit()?;
            Ok(u64::try_from(reports).unwrap_or(u64::MAX))
        })
    }

    fn add_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        self.with(|c| insert_audit(c, audit))
    }

    fn forget_worker(&self, worker_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let deleted = tx.execute(
                "DELETE FROM workers WHERE worker_id = ?1",
                params![worker_id],
            )?;
            if deleted == 0 {
                return Ok(false);
            }
            insert_audit(&tx, audit)?;
            tx.commit()?;
            Ok(true)
        })
    }

    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT at, kind, actor, channel, version, detail FROM (
                   SELECT id, at, kind, actor, channel, version, detail, 0 AS source FROM audit
                   UNION ALL
                   SELECT id, received_at, 'report', worker_id, channel, to_version,
                          outcome || CASE WHEN reason = '' THEN '' ELSE ' ' || reason END
                          || ' ' || from_version || '->' || to_version
                          || ' in ' || duration_ms || ' ms (correlation ' || correlation_id || ')', 1 FROM reports
                 ) WHERE (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR at >= ?4)
                     AND (?5 IS NULL OR actor = ?5) AND (?6 IS NULL OR at <= ?6)
                 ORDER BY at DESC, source DESC, id DESC LIMIT ?1",
            )?;
            let query = params![
                limit,
                filter.channel,
                filter.kind,
                filter.since,
                filter.actor,
                filter.until
            ];
            let rows = statement.query_map(query, |row| {
                Ok(AuditRecord {
                    at: row.get(0)?,
                    kind: row.get(1)?,
                    actor: row.get(2)?,
                    channel: row.get(3)?,
                    version: row.get(4)?,
                    detail: row.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A store made before channels were created explicitly keeps every channel it served, and
    /// gains `canary` and `stable` (the README's commands promote to them on a new server).
    #[test]
    fn migration_2_keeps_the_stored_channels_created() {
        let dir =
            std::env::temp_dir().join(format!("update-server-migration-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        {
            let connection = Connection::open(dir.join("update-server.sqlite3")).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection.pragma_update(None, "user_version", 1).unwrap();
            connection
                .execute(
                    "INSERT INTO channels (channel, statement, updated_at) VALUES ('beta', x'00', 7)",
                    [],
                )
                .unwrap();
        }
        let store = SqliteStore::open(&dir).unwrap();
        assert_eq!(store.channel_names().unwrap(), ["beta", "canary", "stable"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `channel_reports` and the audit's actor and time filters answer alike in SQLite and in
    /// the memory store the state tests use (the PostgreSQL store must too).
    #[test]
    fn channel_reports_and_audit_filters_agree_with_the_memory_store() {
        let dir =
            std::env::temp_dir().join(format!("update-server-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = SqliteStore::open(&dir).unwrap();
        let memory = crate::store::memory::MemoryStore::new();
        let stores: [&dyn Store; 2] = [&sqlite, &memory];
        for store in stores {
            for (i, (worker, channel, outcome)) in [
                ("a", "canary", "success"),
                ("b", "canary", "rolled_back"),
                ("c", "stable", "success"),
                ("a", "canary", "failure"),
            ]
            .into_iter()
            .enumerate()
            {
                let at = 100 + i64::try_from(i).unwrap();
                store
                    .add_report(&ReportRecord {
                        worker_id: worker.to_owned(),
                        channel: channel.to_owned(),
                        correlation_id: format!("c{i}"),
                        from_version: "1.0.0".to_owned(),
                        to_version: "1.1.0".to_owned(),
                        outcome: outcome.to_owned(),
                        reason: String::new(),
                        duration_ms: 1,
                        at,
                        received_at: at,
                        counted: true,
                    })
                    .unwrap();
            }
            store
                .add_audit(&AuditRecord {
                    at: 102,
                    kind: "halt".to_owned(),
                    actor: "ops".to_owned(),
                    channel: "canary".to_owned(),
                    version: "1.1.0".to_owned(),
                    detail: "serial 2: stop".to_owned(),
                })
                .unwrap();
        }
        for store in stores {
            let newest_two: Vec<(String, i64)> = store
                .channel_reports("canary", 2)
                .unwrap()
                .into_iter()
                .map(|r| (r.worker_id, r.received_at))
                .collect();
            assert_eq!(newest_two, [("b".to_owned(), 101), ("a".to_owned(), 103)]);
            assert_eq!(store.channel_reports("canary", 10).unwrap().len(), 3);
            let filtered = |filter: AuditFilter| -> Vec<(String, String, i64)> {
                store
                    .audit(&filter)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.kind, e.actor, e.at))
                    .collect()
            };
            assert_eq!(
                filtered(AuditFilter {
                    actor: Some("a".to_owned()),
                    ..AuditFilter::newest(10)
                }),
                [
                    ("report".to_owned(), "a".to_owned(), 103),
                    ("report".to_owned(), "a".to_owned(), 100)
                ]
            );
            assert_eq!(
                filtered(AuditFilter {
                    since: Some(101),
                    until: Some(102),
                    ..AuditFilter::newest(10)
                }),
                [
                    ("report".to_owned(), "c".to_owned(), 102),
                    ("halt".to_owned(), "ops".to_owned(), 102),
                    ("report".to_owned(), "b".to_owned(), 101)
                ]
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
