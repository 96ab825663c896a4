//! What the store keeps for per-worker enrolment: join tokens, each enrolled worker's
//! credential, and the artifacts each enrolled worker downloaded. Secrets are never stored, only
//! their SHA-256 (hex).

use super::{AuditRecord, StoreResult};

/// A join token (`worker-release enroll-token`): lets up to `max_uses` workers enrol until
/// `expires_at`, unless revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollTokenRecord {
    /// Public id (listing, revoking); not a secret.
    pub id: String,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// The channel the workers it enrols must follow (empty: any).
    pub channel: String,
    /// How many workers may enrol with it.
    pub max_uses: u32,
    /// How many did.
    pub uses: u32,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// The admin token's name that made it.
    pub created_by: String,
    /// When it was revoked (Unix seconds), if it was.
    pub revoked_at: Option<i64>,
}

/// An enrolled worker's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// The worker it is bound to.
    pub worker_id: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The channel it may follow (empty: any).
    pub channel: String,
    /// The join token it was enrolled with.
    pub token_id: String,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// When it was revoked (`worker forget`), if it was.
    pub revoked_at: Option<i64>,
}

/// The enrolment tables (migration 3).
pub trait EnrolStore {
    /// Every join token, revoked and used-up ones included.
    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollTokenRecord>>;
    /// Stores a new join token, with an audit entry.
    fn add_enroll_token(&self, token: &EnrollTokenRecord, audit: &AuditRecord) -> StoreResult<()>;
    /// Marks join token `id` revoked at `at`, with an audit entry.
    fn revoke_enroll_token(&self, id: &str, at: i64, audit: &AuditRecord) -> StoreResult<()>;
    /// Every credential, revoked ones included.
    fn credentials(&self) -> StoreResult<Vec<CredentialRecord>>;
    /// In one transaction: one more use of `credential.token_id`, the credential (replacing a
    /// revoked one of the same worker) and the audit entry.
    fn enrol(&self, credential: &CredentialRecord, audit: &AuditRecord) -> StoreResult<()>;
    /// Marks `worker_id`'s credential revoked at `at`; false when it has none.
    fn revoke_credential(&self, worker_id: &str, at: i64) -> StoreResult<bool>;
    /// Records that `worker_id` downloaded artifact `sha256` (once per pair).
    fn record_download(&self, worker_id: &str, sha256: &str, at: i64) -> StoreResult<()>;
    /// Whether `worker_id` downloaded any of `sha256s`.
    fn downloaded_any(&self, worker_id: &str, sha256s: &[String]) -> StoreResult<bool>;
}
