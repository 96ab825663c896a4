//! The PostgreSQL store (`update-server serve --database-url postgres://...`): the same tables
//! and the same one-transaction-per-change contract as [`crate::sqlite::SqliteStore`], so that
//! several replicas can share one database.
//!
//! Driver: the synchronous `postgres` crate (rust-postgres), since the [`Store`] trait is
//! synchronous and called from `spawn_blocking`. Connections: a small fixed set of clients, each
//! behind its own mutex (a call takes a free one, else waits for one), reconnected when the
//! server closed them: no pool crate is needed for a handful of connections, and a broken
//! connection costs one failed call, not a restart.
//!
//! Migrations: `migrations/postgres/000N_*.sql`, each applied once in its own transaction and
//! recorded in `schema_migrations`; a transaction-scoped advisory lock makes replicas starting
//! together apply each one exactly once.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use postgres::{Client, Config, NoTls, Transaction};

mod enrolment;
pub mod replicas;

use crate::store::{
    AuditFilter, AuditRecord, ChannelRecord, ChannelWrite, FailureGroup, OutcomeCounts,
    OutcomeQuery, PutRelease, ReleaseRecord, ReportRecord, Store, StoreError, StoreResult,
    WorkerRecord,
};

/// Migrations, in order; the position + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_rollout_plans.sql"),
    include_str!("../migrations/postgres/0003_workers_by_channel.sql"),
];

/// The columns [`worker_from_row`] reads, in order.
const WORKER_COLUMNS: &str =
    "worker_id, version, platform, channel, hostname, task_types, last_seen";

fn worker_from_row(row: &postgres::Row) -> WorkerRecord {
    WorkerRecord {
        worker_id: row.get(0),
        version: row.get(1),
        platform: row.get(2),
        channel: row.get(3),
        hostname: row.get(4),
        task_types: row.get(5),
        last_seen: row.get(6),
    }
}

/// The advisory lock key serialising migrations across replicas ("upds" + 1).
const MIGRATION_LOCK: i64 = 0x7570_6473_0001;

/// The first key of the transaction-scoped advisory lock `save_channel` takes per channel (the
/// second is the channel name's hash).
const SERIAL_LOCK: i32 = 0x7570_6473;

/// How many connections one server keeps (requests beyond wait for a free one).
const CONNECTIONS: usize = 4;

/// PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    config: Config,
    /// The URL without its password, for errors and logs.
    url: String,
    clients: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `url` without its password (`postgres://user:secret@host/db` or `password=secret`).
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=***"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl PostgresStore {
    /// Connects to `url` and applies the pending migrations.
    pub fn open(url: &str) -> StoreResult<Self> {
        let redacted = redact(url);
        let config = Config::from_str(url).map_err(|source| StoreError::Postgres {
            url: redacted.clone(),
            source,
        })?;
        let mut first = config
            .connect(NoTls)
            .map_err(|source| StoreError::Postgres {
                url: redacted.clone(),
                source,
            })?;
        migrate(&mut first, &redacted)?;
        let mut clients: Vec<Mutex<Option<Client>>> =
            (1..CONNECTIONS).map(|_| Mutex::new(None)).collect();
        clients.insert(0, Mutex::new(Some(first)));
        Ok(PostgresStore {
            config,
            url: redacted,
            clients,
            next: AtomicUsize::new(0),
        })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn slot(&self) -> MutexGuard<'_, Option<Client>> {
        for slot in &self.clients {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> StoreResult<T> {
        let error = |source| StoreError::Postgres {
            url: self.url.clone(),
            source,
        };
        let mut slot = self.slot();
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = None;
            *slot = Some(self.config.connect(NoTls).map_err(error)?);
        }
        let Some(client) = slot.as_mut() else {
            unreachable!("connected just above");
        };
        let outcome = f(client).map_err(error);
        if client.is_closed() {
            // Reconnect on the next call rather than handing out a dead connection.
            *slot = None;
        }
        outcome
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> StoreResult<T> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            let value = f(&mut tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

fn migrate(client: &mut Client, url: &str) -> StoreResult<()> {
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index + 1;
        let migration_error = |source| StoreError::PostgresMigration {
            url: url.to_owned(),
            version,
            source,
        };
        let mut tx = client.transaction().map_err(migration_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(migration_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version     INTEGER PRIMARY KEY,
                 applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .map_err(migration_error)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .map_err(migration_error)?
            .get(0);
        let current = usize::try_from(current).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: PathBuf::from(url),
                found: current,
                supported: MIGRATIONS.len(),
            });
        }
        if current >= version {
            continue;
        }
        tx.batch_execute(sql).map_err(migration_error)?;
        let recorded = i32::try_from(version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&recorded],
        )
        .map_err(migration_error)?;
        tx.commit().map_err(migration_error)?;
    }
    Ok(())
}

pub(crate) fn insert_audit(
    tx: &mut impl postgres::GenericClient,
    audit: &AuditRecord,
) -> Result<(), postgres::Error> {
    tx.execute(
        "INSERT INTO audit (at, kind, actor, channel, version, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&audit.at, &audit.kind, &audit.actor, &audit.channel, &audit.version, &audit.detail],
    )?;
    Ok(())
}

/// Tells every replica (`LISTEN`ing on [`replicas::CHANNELS`]) that `channel` changed; sent
/// on commit only, so never for a change that was rolled back.
fn announce(tx: &mut impl postgres::GenericClient, channel: &str) -> Result<(), postgres::Error> {
    tx.execute("SELECT pg_notify($1, $2)", &[&replicas::CHANNELS, &channel])?;
    Ok(())
}

pub(crate) fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Store for PostgresStore {
    fn roots(&self) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        self.with(|c| {
            let rows = c.query("SELECT version, body FROM roots ORDER BY version", &[])?;
            Ok(rows
                .iter()
                .map(|row| (count(row.get(0)), row.get(1)))
                .collect())
        })
    }

    fn add_root(&self, version: u64, body: &[u8], audit: &AuditRecord) -> StoreResult<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO roots (version, body, added_at) VALUES ($1, $2, $3)
                 ON CONFLICT (version) DO NOTHING",
                &[&signed(version), &body, &audit.at],
            )?;
            insert_audit(tx, audit)?;
            announce(tx, replicas::EVERYTHING)
        })
    }

    fn put_release(&self, release: &ReleaseRecord, audit: &AuditRecord) -> StoreResult<PutRelease> {
        self.transaction(|tx| {
            // FOR UPDATE: two replicas publishing the same version decide one after the other.
            let existing = tx.query_opt(
                "SELECT manifest_sha256, body FROM releases WHERE version = $1 FOR UPDATE",
                &[&release.version],
            )?;
            let existing: Option<(String, Vec<u8>)> = existing.map(|row| (row.get(0), row.get(1)));
            Ok(match existing {
                Some((sha, body)) if sha == release.manifest_sha256 && body == release.body => {
                    PutRelease::Identical
                }
                Some((sha, _)) if sha == release.manifest_sha256 => {
                    tx.execute(
                        "UPDATE releases SET body = $2 WHERE version = $1",
                        &[&release.version, &release.body],
                    )?;
                    insert_audit(tx, audit)?;
                    PutRelease::Resigned
                }
                Some(_) => PutRelease::Conflict,
                None => {
                    let inserted = tx.execute(
                        "INSERT INTO releases (version, manifest_sha256, body, published_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING",
                        &[
                            &release.version,
                            &release.manifest_sha256,
                            &release.body,
                            &release.published_at,
                        ],
                    )?;
                    if inserted == 0 {
                        // Another replica stored this version in between: its manifest wins.
                        PutRelease::Conflict
                    } else {
                        insert_audit(tx, audit)?;
                        PutRelease::Inserted
                    }
                }
            })
        })
    }

    fn releases(&self) -> StoreResult<Vec<ReleaseRecord>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT version, manifest_sha256, body, published_at FROM releases
                 ORDER BY published_at, seq",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| ReleaseRecord {
                    version: row.get(0),
                    manifest_sha256: row.get(1),
                    body: row.get(2),
                    published_at: row.get(3),
                })
                .collect())
        })
    }

    fn add_artifact(&self, sha256: &str, size: u64, at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO artifacts (sha256, size, stored_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &signed(size), &at],
            )?;
            Ok(())
        })
    }

    fn artifacts(&self) -> StoreResult<Vec<(String, u64)>> {
        self.with(|c| {
            let rows = c.query("SELECT sha256, size FROM artifacts", &[])?;
            Ok(rows
                .iter()
                .map(|row| (row.get(0), count(row.get(1))))
                .collect())
        })
    }

    fn channels(&self) -> StoreResult<Vec<ChannelRecord>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT channel, statement, rollback, halt_reason, plan FROM channels ORDER BY channel",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| ChannelRecord {
                    channel: row.get(0),
                    statement: row.get(1),
                    rollback: row.get(2),
                    halt_reason: row.get(3),
                    plan: row.get(4),
                })
                .collect())
        })
    }

    fn save_channel(&self, change: ChannelWrite<'_>) -> StoreResult<()> {
        let record = change.record;
        let serial = signed(change.serial);
        let stored = self.with(|client| {
            let mut tx = client.transaction()?;
            // Replicas saving the same channel decide one after the other (until commit), and a
            // serial not above every one stored is refused: a serial is never reused, and a
            // change computed from a state another replica replaced meanwhile is not stored.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&SERIAL_LOCK, &record.channel],
            )?;
            let highest: Option<i64> = tx
                .query_one(
                    "SELECT MAX(serial) FROM statements WHERE channel = $1",
                    &[&record.channel],
                )?
                .get(0);
            if let Some(highest) = highest.filter(|highest| *highest >= serial) {
                return Ok(Some(highest));
            }
            tx.execute(
                "INSERT INTO channels (channel, statement, rollback, halt_reason, updated_at, plan)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (channel) DO UPDATE SET statement = excluded.statement,
                   rollback = excluded.rollback, halt_reason = excluded.halt_reason,
                   updated_at = excluded.updated_at, plan = excluded.plan",
                &[&record.channel, &record.statement, &record.rollback, &record.halt_reason, &change.audit.at, &record.plan],
            )?;
            tx.execute(
                "INSERT INTO statements (channel, serial, body, signed_at) VALUES ($1, $2, $3, $4)",
                &[&record.channel, &serial, &record.statement, &change.audit.at],
            )?;
            insert_audit(&mut tx, change.audit)?;
            if let Some((version, percent)) = change.promotion {
                tx.execute(
                    "INSERT INTO promotions (channel, version, percent, at) VALUES ($1, $2, $3, $4)",
                    &[&record.channel, &version, &i32::from(percent), &change.audit.at],
                )?;
            }
            announce(&mut tx, &record.channel)?;
            tx.commit()?;
            Ok(None)
        })?;
        match stored {
            None => Ok(()),
            Some(highest) => Err(StoreError::SerialConflict {
                channel: record.channel.clone(),
                serial: change.serial,
                stored: count(highest),
            }),
        }
    }

    fn channel_names(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let rows = c.query("SELECT name FROM channel_names ORDER BY name", &[])?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn create_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.transaction(|tx| {
            let inserted = tx.execute(
                "INSERT INTO channel_names (name, created_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &audit.at],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            insert_audit(tx, audit)?;
            announce(tx, name)?;
            Ok(true)
        })
    }

    fn delete_channel(&self, name: &str, audit: &AuditRecord) -> StoreResult<()> {
        self.transaction(|tx| {
            tx.execute("DELETE FROM channel_names WHERE name = $1", &[&name])?;
            tx.execute("DELETE FROM channels WHERE channel = $1", &[&name])?;
            insert_audit(tx, audit)?;
            announce(tx, name)
        })
    }

    fn max_serial(&self, channel: &str) -> StoreResult<Option<u64>> {
        self.with(|c| {
            let row = c.query_one(
                "SELECT MAX(serial) FROM statements WHERE channel = $1",
                &[&channel],
            )?;
            Ok(row.get::<_, Option<i64>>(0).map(count))
        })
    }

    fn first_promotion(&self, channel: &str, version: &str) -> StoreResult<Option<i64>> {
        self.with(|c| {
            let row = c.query_one(
                "SELECT MIN(at) FROM promotions WHERE channel = $1 AND version = $2",
                &[&channel, &version],
            )?;
            Ok(row.get(0))
        })
    }

    fn upsert_worker(&self, worker: &WorkerRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO workers (worker_id, version, platform, channel, hostname, task_types, first_seen, last_seen)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (worker_id) DO UPDATE SET version = excluded.version,
                   platform = excluded.platform, channel = excluded.channel,
                   hostname = CASE WHEN excluded.hostname = '' THEN workers.hostname ELSE excluded.hostname END,
                   task_types = CASE WHEN excluded.task_types = '[]' THEN workers.task_types ELSE excluded.task_types END,
                   last_seen = excluded.last_seen",
                &[
                    &worker.worker_id,
                    &worker.version,
                    &worker.platform,
                    &worker.channel,
                    &worker.hostname,
                    &worker.task_types,
                    &worker.last_seen,
                ],
            )?;
            Ok(())
        })
    }

    fn workers(&self) -> StoreResult<Vec<WorkerRecord>> {
        self.with(|c| {
            let rows = c.query(&format!("SELECT {WORKER_COLUMNS} FROM workers"), &[])?;
            Ok(rows.iter().map(worker_from_row).collect())
        })
    }

    fn channel_workers(&self, channel: &str) -> StoreResult<Vec<WorkerRecord>> {
        self.with(|c| {
            let rows = c.query(
                &format!("SELECT {WORKER_COLUMNS} FROM workers WHERE channel = $1"),
                &[&channel],
            )?;
            Ok(rows.iter().map(worker_from_row).collect())
        })
    }

    fn add_report(&self, report: &ReportRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO reports (worker_id, channel, correlation_id, from_version, to_version, outcome,
                                      reason, duration_ms, at, received_at, counted)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &report.worker_id,
                    &report.channel,
                    &report.correlation_id,
                    &report.from_version,
                    &report.to_version,
                    &report.outcome,
                    &report.reason,
                    &report.duration_ms,
                    &report.at,
                    &report.received_at,
                    &report.counted,
                ],
            )?;
            Ok(())
        })
    }

    fn release_outcomes(&self, query: OutcomeQuery<'_>) -> StoreResult<OutcomeCounts> {
        let defects: Vec<&str> = query.defects.to_vec();
        self.with(|c| {
            let row = c.query_one(
                "SELECT
                   COUNT(DISTINCT CASE WHEN outcome IN ('failure', 'rolled_back')
                        AND reason = ANY($3) THEN worker_id END),
                   COUNT(DISTINCT CASE WHEN outcome = 'success' THEN worker_id END),
                   COUNT(DISTINCT CASE WHEN outcome = 'success' OR (outcome IN ('failure', 'rolled_back')
                        AND reason = ANY($3)) THEN worker_id END)
                 FROM reports WHERE channel = $1 AND to_version = $2 AND counted",
                &[&query.channel, &query.version, &defects],
            )?;
            Ok(OutcomeCounts {
                failed: count(row.get(0)),
                succeeded: count(row.get(1)),
                tried: count(row.get(2)),
            })
        })
    }

    fn tried_workers(&self, query: OutcomeQuery<'_>) -> StoreResult<Vec<String>> {
        let defects: Vec<&str> = query.defects.to_vec();
        self.with(|c| {
            let rows = c.query(
                "SELECT DISTINCT worker_id FROM reports
                 WHERE channel = $1 AND to_version = $2 AND counted
                   AND (outcome = 'success' OR (outcome IN ('failure', 'rolled_back')
                        AND reason = ANY($3)))
                 ORDER BY worker_id",
                &[&query.channel, &query.version, &defects],
            )?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn channel_reports(&self, channel: &str, limit: usize) -> StoreResult<Vec<ReportRecord>> {
        let limit = signed(u64::try_from(limit).unwrap_or(u64::MAX));
        self.with(|c| {
            let rows = c.query(
                "SELECT worker_id, channel, correlation_id, from_version, to_version, outcome, reason,
                        duration_ms, at, received_at, counted FROM (
                   SELECT * FROM reports WHERE channel = $1 ORDER BY received_at DESC, id DESC LIMIT $2
                 ) AS newest ORDER BY received_at ASC, id ASC",
                &[&channel, &limit],
            )?;
            Ok(rows
                .iter()
                .map(|row| ReportRecord {
                    worker_id: row.get(0),
                    channel: row.get(1),
                    correlation_id: row.get(2),
                    from_version: row.get(3),
                    to_version: row.get(4),
                    outcome: row.get(5),
                    reason: row.get(6),
                    duration_ms: row.get(7),
                    at: row.get(8),
                    received_at: row.get(9),
                    counted: row.get(10),
                })
                .collect())
        })
    }

    fn failures_since(&self, since: i64) -> StoreResult<Vec<FailureGroup>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT channel, to_version, outcome, reason, COUNT(*) FROM reports
                 WHERE received_at >= $1 AND outcome IN ('failure', 'rolled_back')
                 GROUP BY channel, to_version, outcome, reason ORDER BY COUNT(*) DESC",
                &[&since],
            )?;
            Ok(rows
                .iter()
                .map(|row| FailureGroup {
                    channel: row.get(0),
                    version: row.get(1),
                    outcome: row.get(2),
                    reason: row.get(3),
                    count: count(row.get(4)),
                })
                .collect())
        })
    }

    fn prune(&self, reports_received_before: i64, forget_workers: &[String]) -> StoreResult<u64> {
        self.transaction(|tx| {
            let reports = tx.execute(
                "DELETE FROM reports WHERE received_at < $1",
                &[&reports_received_before],
            )?;
            // A download older than every kept report no longer makes any report count.
            tx.execute(
                "DELETE FROM artifact_downloads WHERE at < $1",
                &[&reports_received_before],
            )?;
            tx.execute(
                "DELETE FROM workers WHERE worker_id = ANY($1)",
                &[&forget_workers],
            )?;
            Ok(reports)
        })
    }

    fn add_audit(&self, audit: &AuditRecord) -> StoreResult<()> {
        self.with(|c| insert_audit(c, audit))
    }

    fn audit(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let limit = signed(u64::try_from(filter.limit).unwrap_or(u64::MAX));
        self.with(|c| {
            let rows = c.query(
                "SELECT at, kind, actor, channel, version, detail FROM (
                   SELECT id, at, kind, actor, channel, version, detail, 0 AS source FROM audit
                   UNION ALL
                   SELECT id, received_at, 'report', worker_id, channel, to_version,
                          outcome || CASE WHEN reason = '' THEN '' ELSE ' ' || reason END
                          || ' ' || from_version || '->' || to_version
                          || ' in ' || duration_ms::text || ' ms (correlation ' || correlation_id || ')', 1 FROM reports
                 ) AS merged
                 WHERE ($2::text IS NULL OR channel = $2) AND ($3::text IS NULL OR kind = $3)
                   AND ($4::bigint IS NULL OR at >= $4)
                   AND ($5::text IS NULL OR actor = $5) AND ($6::bigint IS NULL OR at <= $6)
                 ORDER BY at DESC, source DESC, id DESC LIMIT $1",
                &[
                    &limit,
                    &filter.channel,
                    &filter.kind,
                    &filter.since,
                    &filter.actor,
                    &filter.until,
                ],
            )?;
            Ok(rows
                .iter()
                .map(|row| AuditRecord {
                    at: row.get(0),
                    kind: row.get(1),
                    actor: row.get(2),
                    channel: row.get(3),
                    version: row.get(4),
                    detail: row.get(5),
                })
                .collect())
        })
    }

    fn forget_worker(&self, worker_id: &str, audit: &AuditRecord) -> StoreResult<bool> {
        self.transaction(|tx| {
            let deleted = tx.execute("DELETE FROM workers WHERE worker_id = $1", &[&worker_id])?;
            if deleted == 0 {
                return Ok(false);
            }
            insert_audit(tx, audit)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://updates:s3cret@db.internal:5432/updates"),
            "postgres://updates:***@db.internal:5432/updates"
        );
        assert_eq!(
            redact("postgres://updates@db/updates"),
            "postgres://updates@db/updates"
        );
        assert_eq!(
            redact("host=db user=u password=s3cret dbname=d"),
            "host=db user=u password=*** dbname=d"
        );
    }
}
