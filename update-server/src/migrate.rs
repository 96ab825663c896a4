//! `update-server migrate --from sqlite:<DATA_DIR> --to postgres://...`: copies a SQLite
//! deployment's whole state into an empty PostgreSQL database, in one PostgreSQL transaction.
//!
//! Table by table rather than through the [`crate::store::Store`] read methods: the trait does
//! not expose the statement history, the promotions, the enrolment tokens' hashes or the
//! artifact downloads (they are written only as side effects), and both schemas have the same
//! tables and columns (`migrations/` and `migrations/postgres/`), so a row copy is exact. Rows
//! are inserted in SQLite's rowid order, so the PostgreSQL identity columns (`releases.seq`,
//! `reports.id`, `audit.id`) keep the same order. Artifacts' bytes stay in `--data-dir`: point
//! the PostgreSQL server at the same directory.

use std::path::{Path, PathBuf};

use clap::Args;
use postgres::types::ToSql;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::store::StoreError;

/// `update-server migrate` options.
#[derive(Debug, Clone, Args)]
pub struct MigrateConfig {
    /// The source: `sqlite:<DATA_DIR>` (the `--data-dir` of the SQLite server, stopped).
    #[arg(long)]
    pub from: String,
    /// The target: an empty PostgreSQL database (`postgres://user:password@host:port/db`).
    #[arg(long)]
    pub to: String,
}

/// Why a migration was refused or failed (nothing was written to the target).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// `--from` is not `sqlite:<DIR>`.
    #[error("--from must be sqlite:<DATA_DIR>, not {0:?}")]
    BadSource(String),
    /// The source directory has no database.
    #[error("{} has no update-server.sqlite3", .0.display())]
    NoSource(PathBuf),
    /// The target already holds state.
    #[error("the target database {url} already holds data ({table}: {rows} rows); migrate only into an empty database (one no server has run on)")]
    NotEmpty {
        /// The URL without its password.
        url: String,
        /// A table that is not empty.
        table: &'static str,
        /// Its rows.
        rows: i64,
    },
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
    /// PostgreSQL `INTEGER` (`promotions.percent`).
    Int32,
    NullableInt,
    NullableText,
    Blob,
    NullableBlob,
    /// SQLite `INTEGER` 0/1, PostgreSQL `BOOLEAN`.
    Bool,
}

/// Every table of the state, in copy order, with the columns copied (identity columns left out).
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "roots",
        &[
            ("version", Kind::Int),
            ("body", Kind::Blob),
            ("added_at", Kind::Int),
        ],
    ),
    (
        "releases",
        &[
            ("version", Kind::Text),
            ("manifest_sha256", Kind::Text),
            ("body", Kind::Blob),
            ("published_at", Kind::Int),
        ],
    ),
    (
        "artifacts",
        &[
            ("sha256", Kind::Text),
            ("size", Kind::Int),
            ("stored_at", Kind::Int),
        ],
    ),
    (
        "channels",
        &[
            ("channel", Kind::Text),
            ("statement", Kind::Blob),
            ("rollback", Kind::NullableBlob),
            ("halt_reason", Kind::Text),
            ("updated_at", Kind::Int),
            ("plan", Kind::NullableText),
        ],
    ),
    (
        "statements",
        &[
            ("channel", Kind::Text),
            ("serial", Kind::Int),
            ("body", Kind::Blob),
            ("signed_at", Kind::Int),
        ],
    ),
    (
        "promotions",
        &[
            ("channel", Kind::Text),
            ("version", Kind::Text),
            ("percent", Kind::Int32),
            ("at", Kind::Int),
        ],
    ),
    (
        "workers",
        &[
            ("worker_id", Kind::Text),
            ("version", Kind::Text),
            ("platform", Kind::Text),
            ("channel", Kind::Text),
            ("hostname", Kind::Text),
            ("task_types", Kind::Text),
            ("first_seen", Kind::Int),
            ("last_seen", Kind::Int),
        ],
    ),
    (
        "reports",
        &[
            ("worker_id", Kind::Text),
            ("channel", Kind::Text),
            ("correlation_id", Kind::Text),
            ("from_version", Kind::Text),
            ("to_version", Kind::Text),
            ("outcome", Kind::Text),
            ("reason", Kind::Text),
            ("duration_ms", Kind::Int),
            ("at", Kind::Int),
            ("received_at", Kind::Int),
            ("counted", Kind::Bool),
        ],
    ),
    (
        "audit",
        &[
            ("at", Kind::Int),
            ("kind", Kind::Text),
            ("actor", Kind::Text),
            ("channel", Kind::Text),
            ("version", Kind::Text),
            ("detail", Kind::Text),
        ],
    ),
    (
        "channel_names",
        &[("name", Kind::Text), ("created_at", Kind::Int)],
    ),
    (
        "enroll_tokens",
        &[
            ("id", Kind::Text),
            ("token_sha256", Kind::Text),
            ("channel", Kind::Text),
            ("max_uses", Kind::Int),
            ("uses", Kind::Int),
            ("expires_at", Kind::Int),
            ("created_at", Kind::Int),
            ("created_by", Kind::Text),
            ("revoked_at", Kind::NullableInt),
        ],
    ),
    (
        "worker_credentials",
        &[
            ("worker_id", Kind::Text),
            ("secret_sha256", Kind::Text),
            ("channel", Kind::Text),
            ("token_id", Kind::Text),
            ("enrolled_at", Kind::Int),
            ("revoked_at", Kind::NullableInt),
        ],
    ),
    (
        "artifact_downloads",
        &[
            ("worker_id", Kind::Text),
            ("sha256", Kind::Text),
            ("at", Kind::Int),
        ],
    ),
];

/// One row, as PostgreSQL parameters.
type Row = Vec<Box<dyn ToSql + Sync + Send>>;

/// Copies the SQLite state of `config.from` into the empty database `config.to`; returns the
/// rows copied per table, in copy order.
pub fn migrate(config: &MigrateConfig) -> Result<Vec<(&'static str, usize)>, MigrateError> {
    let dir = config
        .from
        .strip_prefix("sqlite:")
        .map(Path::new)
        .ok_or_else(|| MigrateError::BadSource(config.from.clone()))?;
    if !dir.join("update-server.sqlite3").is_file() {
        return Err(MigrateError::NoSource(dir.to_owned()));
    }
    // Opening applies the pending SQLite migrations, so the source has every column copied.
    let source = SqliteStore::open(dir)?;
    let mut tables: Vec<(&'static str, Vec<Row>)> = Vec::new();
    for (table, columns) in TABLES {
        let rows = source.with(|connection| read_table(connection, table, columns))?;
        tables.push((table, rows));
    }
    let target = PostgresStore::open(&config.to)?;
    let url = target.url().to_owned();
    let outcome = target.transaction(|tx| {
        // Two migrations at once into one database: the second waits, then sees the data.
        tx.execute("LOCK TABLE roots IN EXCLUSIVE MODE", &[])?;
        for (table, _) in TABLES {
            let rows: i64 = if *table == "channel_names" {
                // Migration 1 creates `canary` and `stable`: they are not data.
                tx.query_one(
                    "SELECT COUNT(*) FROM channel_names WHERE name NOT IN ('canary', 'stable')",
                    &[],
                )?
                .get(0)
            } else {
                tx.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
                    .get(0)
            };
            if rows > 0 {
                return Ok(Err((*table, rows)));
            }
        }
        tx.execute("DELETE FROM channel_names", &[])?;
        let mut counts = Vec::new();
        for ((table, columns), (_, rows)) in TABLES.iter().zip(&tables) {
            let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
            let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let insert = tx.prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            ))?;
            for row in rows {
                let params: Vec<&(dyn ToSql + Sync)> = row
                    .iter()
                    .map(|value| value.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(&insert, &params)?;
            }
            counts.push((*table, rows.len()));
        }
        Ok(Ok(counts))
    })?;
    outcome.map_err(|(table, rows)| MigrateError::NotEmpty { url, table, rows })
}

fn read_table(
    connection: &mut rusqlite::Connection,
    table: &str,
    columns: &[(&str, Kind)],
) -> rusqlite::Result<Vec<Row>> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut statement = connection.prepare(&format!(
        "SELECT {} FROM {table} ORDER BY rowid",
        names.join(", ")
    ))?;
    let rows = statement.query_map([], |row| {
        let mut values: Row = Vec::with_capacity(columns.len());
        for (index, (_, kind)) in columns.iter().enumerate() {
            values.push(match kind {
                Kind::Text => Box::new(row.get::<_, String>(index)?),
                Kind::Int => Box::new(row.get::<_, i64>(index)?),
                Kind::Int32 => Box::new(row.get::<_, i32>(index)?),
                Kind::NullableInt => Box::new(row.get::<_, Option<i64>>(index)?),
                Kind::NullableText => Box::new(row.get::<_, Option<String>>(index)?),
                Kind::Blob => Box::new(row.get::<_, Vec<u8>>(index)?),
                Kind::NullableBlob => Box::new(row.get::<_, Option<Vec<u8>>>(index)?),
                Kind::Bool => Box::new(row.get::<_, i64>(index)? != 0),
            });
        }
        Ok(values)
    })?;
    rows.collect()
}
