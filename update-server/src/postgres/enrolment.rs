//! [`EnrolStore`] on PostgreSQL (the enrolment tables of `migrations/postgres/0001_init.sql`).

use super::{insert_audit, PostgresStore};
use crate::store::{AuditRecord, CredentialRecord, EnrolStore, EnrollTokenRecord, StoreResult};

fn uses(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl EnrolStore for PostgresStore {
    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollTokenRecord>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, token_sha256, channel, max_uses, uses, expires_at, created_at,
                        created_by, revoked_at FROM enroll_tokens ORDER BY created_at, id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| EnrollTokenRecord {
                    id: row.get(0),
                    token_sha256: row.get(1),
                    channel: row.get(2),
                    max_uses: uses(row.get(3)),
                    uses: uses(row.get(4)),
                    expires_at: row.get(5),
                    created_at: row.get(6),
                    created_by: row.get(7),
                    revoked_at: row.get(8),
                })
                .collect())
        })
    }

    fn add_enroll_token(&self, token: &EnrollTokenRecord, audit: &AuditRecord) -> StoreResult<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO enroll_tokens (id, token_sha256, channel, max_uses, uses, expires_at,
                                            created_at, created_by, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &token.id,
                    &token.token_sha256,
                    &token.channel,
                    &i64::from(token.max_uses),
                    &i64::from(token.uses),
                    &token.expires_at,
                    &token.created_at,
                    &token.created_by,
                    &token.revoked_at,
                ],
            )?;
            insert_audit(tx, audit)
        })
    }

    fn revoke_enroll_token(&self, id: &str, at: i64, audit: &AuditRecord) -> StoreResult<()> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE enroll_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &at],
            )?;
            insert_audit(tx, audit)
        })
    }

    fn credentials(&self) -> StoreResult<Vec<CredentialRecord>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT worker_id, secret_sha256, channel, token_id, enrolled_at, revoked_at
                 FROM worker_credentials",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|row| CredentialRecord {
                    worker_id: row.get(0),
                    secret_sha256: row.get(1),
                    channel: row.get(2),
                    token_id: row.get(3),
                    enrolled_at: row.get(4),
                    revoked_at: row.get(5),
                })
                .collect())
        })
    }

    fn enrol(&self, credential: &CredentialRecord, audit: &AuditRecord) -> StoreResult<()> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE enroll_tokens SET uses = uses + 1 WHERE id = $1",
                &[&credential.token_id],
            )?;
            tx.execute(
                "INSERT INTO worker_credentials
                   (worker_id, secret_sha256, channel, token_id, enrolled_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (worker_id) DO UPDATE SET secret_sha256 = excluded.secret_sha256,
                   channel = excluded.channel, token_id = excluded.token_id,
                   enrolled_at = excluded.enrolled_at, revoked_at = excluded.revoked_at",
                &[
                    &credential.worker_id,
                    &credential.secret_sha256,
                    &credential.channel,
                    &credential.token_id,
                    &credential.enrolled_at,
                    &credential.revoked_at,
                ],
            )?;
            insert_audit(tx, audit)
        })
    }

    fn revoke_credential(&self, worker_id: &str, at: i64) -> StoreResult<bool> {
        self.with(|c| {
            let changed = c.execute(
                "UPDATE worker_credentials SET revoked_at = $2
                 WHERE worker_id = $1 AND revoked_at IS NULL",
                &[&worker_id, &at],
            )?;
            Ok(changed > 0)
        })
    }

    fn record_download(&self, worker_id: &str, sha256: &str, at: i64) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO artifact_downloads (worker_id, sha256, at) VALUES ($1, $2, $3)
                 ON CONFLICT (worker_id, sha256) DO NOTHING",
                &[&worker_id, &sha256, &at],
            )?;
            Ok(())
        })
    }

    fn downloaded_any(&self, worker_id: &str, sha256s: &[String]) -> StoreResult<bool> {
        self.with(|c| {
            let row = c.query_one(
                "SELECT EXISTS (SELECT 1 FROM artifact_downloads WHERE worker_id = $1
                                AND sha256 = ANY($2))",
                &[&worker_id, &sha256s],
            )?;
            Ok(row.get(0))
        })
    }
}
