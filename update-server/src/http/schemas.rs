//! The shapes of the API's bodies, for the generated OpenAPI document (`/openapi.json`).
//!
//! The error envelope and the answers built here in `http/` are these types themselves (they are
//! serialised), so they cannot drift from the document. Some answers are still built as JSON
//! values in `state/` (status, audit, releases, join tokens, handshake, `/latest`): their types
//! here only describe them, and `tests/e2e/openapi.rs` checks every field of the real answers
//! against the document.

use serde::Serialize;
use utoipa::ToSchema;

pub use crate::api::{
    ChannelListing, ChannelSummary, CreateChannelRequest, PromoteRequest, RegisterRequest,
    ReportRequest,
};
pub use crate::state::enrolment::{CreateJoinToken, EnrolRequest};

/// The body of every error answer (4xx and 5xx), whoever refused: a handler, authentication,
/// a limit or axum itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One readable sentence.
    pub error: String,
    /// Stable label clients key on (`unauthorized`, `forbidden`, `read_only`, `cross_origin`,
    /// `not_found`, `soak`, `failure_rate`, `rate_limited`, `too_large`, `bad_request`, ...).
    pub reason: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// Version of the newest trusted root.
    pub root_version: u64,
}

/// `GET /api/admin/session`: who the token is and what it may do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Session {
    /// The token's name (or the enrolled worker's id).
    pub name: String,
    /// `admin`, `viewer` or `worker`.
    pub role: &'static str,
    /// Whether it may act (POST/PUT/DELETE): false for a viewer.
    pub may_act: bool,
}

/// `POST /api/worker-updates/report`: stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`.
    pub status: &'static str,
}

/// `PUT /api/admin/artifacts/{sha256}`: the artifact is stored (now, or already).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArtifactStored {
    /// Its SHA-256.
    pub sha256: String,
    /// Its size in bytes, as signed.
    pub size: u64,
}

/// `DELETE /api/admin/channels/{channel}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelDeleted {
    /// The deleted channel.
    pub deleted: String,
}

/// `DELETE /api/admin/workers/{worker_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerForgotten {
    /// The forgotten worker.
    pub forgotten: String,
}

/// `DELETE /api/admin/enroll-tokens/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JoinTokenRevoked {
    /// The revoked join token's id.
    pub revoked: String,
}

/// `POST /api/admin/roots`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RootPublished {
    /// The root's version.
    pub version: u64,
    /// True when this very root was already published (200 rather than 201).
    pub already_published: bool,
}

/// Body of `POST /api/admin/channels/{channel}/halt` and `resume`: the reason, for the audit trail.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (audit).
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/admin/channels/{channel}/rollback`.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The `rollback.json` directive signed by the release role.
    #[schema(value_type = SignedDocument)]
    pub directive: serde_json::Value,
    /// Why (audit).
    #[serde(default)]
    pub reason: String,
}

/// A signed document of the `manifests` crate (`root`, `release`, `channel`, `rollback`):
/// `signed` is the document (its fields are `manifests/schema/*.schema.json`), `signatures`
/// sign its RFC 8785 form under the context `worker-release/v1/<type>`.
#[derive(Debug, Clone, ToSchema)]
pub struct SignedDocument {
    /// The document; its `type` tag says which (`root`, `release`, `channel`, `rollback`).
    #[schema(value_type = Object)]
    pub signed: serde_json::Value,
    /// Signatures over it.
    pub signatures: Vec<Signature>,
}

/// One signature of a [`SignedDocument`].
#[derive(Debug, Clone, ToSchema)]
pub struct Signature {
    /// Hex SHA-256 of the signing key's public key.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub keyid: String,
    /// Hex of the 64-byte ed25519 signature.
    #[schema(pattern = "^[0-9a-f]{128}$")]
    pub sig: String,
}

/// The bytes of an artifact.
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ArtifactBytes(pub Vec<u8>);

/// `GET /api/worker-updates/latest`: what the channel offers this worker.
#[derive(Debug, Clone, ToSchema)]
pub struct Latest {
    /// Version of the newest trusted root (fetch `root/<N>.json` for the ones not held).
    pub root_version: u64,
    /// The channel statement signed by the channel key.
    pub channel: SignedDocument,
    /// The release it points to, signed by the release role.
    pub release: SignedDocument,
    /// A rollback directive, when one applies to this worker's version.
    pub rollback: Option<SignedDocument>,
    /// Seconds until the next poll.
    pub poll_interval_s: u64,
}

/// `POST /api/workers/register`: the handshake.
#[derive(Debug, Clone, ToSchema)]
pub struct Handshake {
    /// The channel's minimum version.
    pub minimum_version: String,
    /// The channel's recommended version.
    pub recommended_version: String,
    /// Seconds between polls.
    pub poll_interval_s: u64,
    /// Advisory: the worker runs below the minimum (only the signed statement stops it).
    pub below_minimum: bool,
    /// Version of the newest trusted root.
    pub root_version: u64,
}

/// `POST /api/admin/releases`.
#[derive(Debug, Clone, ToSchema)]
pub struct ReleasePublished {
    /// The release's version.
    pub version: String,
    /// SHA-256 of the stored document.
    pub manifest_sha256: String,
    /// Artifacts it lists that are not uploaded yet.
    pub missing_artifacts: Vec<String>,
    /// True when the same release came with other signatures (re-signed).
    pub resigned: bool,
}

/// `GET /api/admin/releases`.
#[derive(Debug, Clone, ToSchema)]
pub struct ReleaseList {
    /// Every stored release.
    pub releases: Vec<ReleaseEntry>,
}

/// One stored release.
#[derive(Debug, Clone, ToSchema)]
pub struct ReleaseEntry {
    /// Its version.
    pub version: String,
    /// SHA-256 of the stored document.
    pub manifest_sha256: String,
    /// When it was published.
    pub published_at: Option<String>,
    /// Every artifact is uploaded.
    pub complete: bool,
    /// Artifacts not uploaded yet.
    pub missing_artifacts: Vec<String>,
    /// Why it no longer verifies against the current root, if it does not.
    pub untrusted: Option<String>,
}

/// `GET /api/admin/channels`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelList {
    /// Every created channel.
    pub channels: Vec<ChannelListing>,
}

/// `GET /api/admin/status`.
#[derive(Debug, Clone, ToSchema)]
pub struct Status {
    /// Version of the newest trusted root.
    pub root_version: u64,
    /// Every channel with something promoted.
    pub channels: Vec<ChannelSummary>,
    /// Stored releases that no longer verify against the current root.
    pub untrusted_releases: Vec<UntrustedRelease>,
    /// Workers by channel and version.
    pub fleet: Vec<FleetEntry>,
    /// Failed updates of the last hour by channel, version, outcome and reason.
    pub failures_last_hour: Vec<FailureCount>,
    /// Workers in the inventory.
    pub workers_total: u64,
    /// Every worker of the inventory.
    pub workers: Vec<WorkerEntry>,
}

/// A stored release that no longer verifies.
#[derive(Debug, Clone, ToSchema)]
pub struct UntrustedRelease {
    /// Its version.
    pub version: String,
    /// Why.
    pub problem: String,
}

/// Workers of one channel at one version.
#[derive(Debug, Clone, ToSchema)]
pub struct FleetEntry {
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: String,
    /// Workers seen recently.
    pub workers: u64,
    /// Workers not seen for `--stale-after`.
    pub stale: u64,
}

/// Failed updates counted together.
#[derive(Debug, Clone, ToSchema)]
pub struct FailureCount {
    /// Channel.
    pub channel: String,
    /// Version attempted.
    pub version: String,
    /// `failure` or `rolled_back`.
    pub outcome: String,
    /// Reason label.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One worker of the inventory.
#[derive(Debug, Clone, ToSchema)]
pub struct WorkerEntry {
    /// Its id.
    pub worker_id: String,
    /// Channel followed.
    pub channel: String,
    /// Running version.
    pub version: String,
    /// Target triple.
    pub platform: String,
    /// Last poll or registration.
    pub last_seen: Option<String>,
    /// Not seen for `--stale-after`.
    pub stale: bool,
}

/// `GET /api/admin/audit`.
#[derive(Debug, Clone, ToSchema)]
pub struct AuditLog {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
}

/// One audit entry (an admin action, or a worker's report).
#[derive(Debug, Clone, ToSchema)]
pub struct AuditEntry {
    /// When.
    pub at: Option<String>,
    /// What (`promote`, `halt`, `report`, ...).
    pub kind: String,
    /// Who (token name or worker id).
    pub actor: String,
    /// Channel, if any.
    pub channel: String,
    /// Version, if any.
    pub version: String,
    /// One readable sentence.
    pub detail: String,
}

/// `POST /api/admin/enroll-tokens`: the token is shown this once.
#[derive(Debug, Clone, ToSchema)]
pub struct JoinTokenCreated {
    /// Its id.
    pub id: String,
    /// The join token.
    pub token: String,
    /// The channel its workers must follow, if bound to one.
    pub channel: Option<String>,
    /// How many workers may enrol with it.
    pub uses: u32,
    /// When it expires.
    pub expires: String,
}

/// `GET /api/admin/enroll-tokens`.
#[derive(Debug, Clone, ToSchema)]
pub struct JoinTokenList {
    /// Oldest first (never the tokens themselves).
    pub enroll_tokens: Vec<JoinTokenEntry>,
}

/// One join token.
#[derive(Debug, Clone, ToSchema)]
pub struct JoinTokenEntry {
    /// Its id.
    pub id: String,
    /// The channel its workers must follow, if bound to one.
    pub channel: Option<String>,
    /// Workers enrolled with it.
    pub uses: u32,
    /// Workers it may enrol.
    pub max_uses: u32,
    /// When it expires.
    pub expires: String,
    /// When it was made.
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
    /// `active`, `used_up`, `expired` or `revoked`.
    pub state: String,
}

/// `POST /api/workers/enroll`: the worker's own credential, shown this once.
#[derive(Debug, Clone, ToSchema)]
pub struct Enrolled {
    /// The worker.
    pub worker_id: String,
    /// Its credential (a bearer token for the worker API).
    pub credential: String,
    /// The channel it is bound to, if the join token was.
    pub channel: Option<String>,
}
