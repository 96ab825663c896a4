//! Per-worker identity (issue 12 item 4). An operator makes a join token (`worker-release
//! enroll-token`, `POST /api/admin/enroll-tokens`); a worker enrols once with it
//! (`POST /api/workers/enroll`) and receives its own credential, which it sends on every later
//! request. The server keeps only SHA-256 hashes of join tokens and credentials.
//!
//! Two questions are answered here and nowhere else, so the rollout code (auto-halt, the stable
//! gate) stays unaware of how workers authenticate:
//! - [`App::check_attribution`]: may this caller speak for this `worker_id` (and channel)? An
//!   enrolled credential speaks only for its own worker; the shared worker token for any worker
//!   that is not enrolled.
//! - [`App::report_counts`]: does this report count towards auto-halt and the stable gate? A
//!   report made with the shared token counts as it always did (the token's holder is trusted
//!   for every worker id); an enrolled worker's counts only when that worker downloaded one of
//!   the release's artifacts with its credential.

use std::collections::HashMap;
use std::sync::RwLock;

use manifests::Timestamp;
use sha2::{Digest, Sha256};

use super::{now, read_lock, write_lock, App};
use crate::error::Error;
use crate::store::{AuditRecord, CredentialRecord, EnrollTokenRecord};
use crate::tokens::Caller;

/// Most workers one join token may enrol.
pub const MAX_TOKEN_USES: u32 = 10_000;

/// Longest lifetime of a join token (a year).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// Prefix of join tokens (tells them from credentials and shared tokens in a file or a log).
pub const JOIN_TOKEN_PREFIX: &str = "wjt-";

/// Prefix of worker credentials.
pub const CREDENTIAL_PREFIX: &str = "wcr-";

/// What kind of refusal an [`EnrolError`] is, independent of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolErrorKind {
    /// The request is malformed.
    Invalid,
    /// No such (or no longer valid) credential: authenticate again.
    Unauthorized,
    /// Authenticated, but not allowed to say this.
    Forbidden,
    /// The state refuses it (the worker is enrolled already).
    Conflict,
    /// What it names does not exist.
    NotFound,
}

/// A refused enrolment request, or a request an enrolled credential may not make.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// No join token, or one this server never issued.
    #[error("missing or unknown join token (Authorization: Bearer <join token from `worker-release enroll-token`>)")]
    UnknownJoinToken,
    /// The join token was revoked.
    #[error("join token {id} was revoked: ask the operator for a new one (`worker-release enroll-token`)")]
    JoinTokenRevoked {
        /// Its id.
        id: String,
    },
    /// The join token is past its expiry.
    #[error("join token {id} expired at {expires}: ask the operator for a new one (`worker-release enroll-token`)")]
    JoinTokenExpired {
        /// Its id.
        id: String,
        /// When it expired.
        expires: String,
    },
    /// Every use of the join token was spent.
    #[error("join token {id} has enrolled its {uses} worker(s) already: ask the operator for a new one (`worker-release enroll-token --uses N`)")]
    JoinTokenUsedUp {
        /// Its id.
        id: String,
        /// Its uses.
        uses: u32,
    },
    /// The worker id has a live credential: enrolling again would hand its identity to whoever
    /// holds the join token.
    #[error("worker {worker_id} is enrolled already; to enrol it again, forget it first (`worker-release worker forget {worker_id}`)")]
    AlreadyEnrolled {
        /// The worker.
        worker_id: String,
    },
    /// A worker id outside 1-128 of `[A-Za-z0-9._-]`.
    #[error("worker id {worker_id:?}: use 1-128 of A-Z, a-z, 0-9, '.', '_', '-'")]
    InvalidWorkerId {
        /// What was sent.
        worker_id: String,
    },
    /// Bad parameters for a new join token.
    #[error("{0}")]
    InvalidJoinTokenRequest(String),
    /// A credential that was revoked (`worker forget`).
    #[error("the credential of worker {worker_id} was revoked (the worker was forgotten): enrol it again with a new join token")]
    CredentialRevoked {
        /// Its worker.
        worker_id: String,
    },
    /// A request about another worker than the credential's.
    #[error("{reason}")]
    WorkerMismatch {
        /// Why, in words.
        reason: String,
    },
    /// A request naming another channel than the one the credential is bound to.
    #[error("worker {worker_id} was enrolled for channel {bound}, not {asked}")]
    ChannelMismatch {
        /// The worker.
        worker_id: String,
        /// Its channel.
        bound: String,
        /// The one named.
        asked: String,
    },
    /// No join token with this id.
    #[error("no join token has id {id:?} (`worker-release enroll-token list`)")]
    UnknownJoinTokenId {
        /// What was asked.
        id: String,
    },
    /// A domain error (unknown channel, storage failure).
    #[error(transparent)]
    Domain(#[from] Error),
}

impl EnrolError {
    /// The stable reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            EnrolError::UnknownJoinToken => "unauthorized",
            EnrolError::JoinTokenRevoked { .. } => "enroll_token_revoked",
            EnrolError::JoinTokenExpired { .. } => "enroll_token_expired",
            EnrolError::JoinTokenUsedUp { .. } => "enroll_token_used_up",
            EnrolError::AlreadyEnrolled { .. } => "already_enrolled",
            EnrolError::InvalidWorkerId { .. } | EnrolError::InvalidJoinTokenRequest(_) => {
                "bad_request"
            }
            EnrolError::CredentialRevoked { .. } => "credential_revoked",
            EnrolError::WorkerMismatch { .. } => "worker_mismatch",
            EnrolError::ChannelMismatch { .. } => "channel_mismatch",
            EnrolError::UnknownJoinTokenId { .. } => "unknown_enroll_token",
            EnrolError::Domain(error) => error.reason(),
        }
    }

    /// What kind of refusal this is (`None`: a domain error, with its own kind).
    pub fn kind(&self) -> Option<EnrolErrorKind> {
        Some(match self {
            EnrolError::UnknownJoinToken | EnrolError::CredentialRevoked { .. } => {
                EnrolErrorKind::Unauthorized
            }
            EnrolError::JoinTokenRevoked { .. }
            | EnrolError::JoinTokenExpired { .. }
            | EnrolError::JoinTokenUsedUp { .. }
            | EnrolError::WorkerMismatch { .. }
            | EnrolError::ChannelMismatch { .. } => EnrolErrorKind::Forbidden,
            EnrolError::AlreadyEnrolled { .. } => EnrolErrorKind::Conflict,
            EnrolError::InvalidWorkerId { .. } | EnrolError::InvalidJoinTokenRequest(_) => {
                EnrolErrorKind::Invalid
            }
            EnrolError::UnknownJoinTokenId { .. } => EnrolErrorKind::NotFound,
            EnrolError::Domain(_) => return None,
        })
    }
}

/// Result of the enrolment operations.
pub type EnrolResult<T> = Result<T, EnrolError>;

/// Body of `POST /api/admin/enroll-tokens`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// The channel the workers it enrols must follow (none: any).
    #[serde(default)]
    pub channel: Option<String>,
    /// How many workers may enrol with it (default 1).
    #[serde(default = "one")]
    pub uses: u32,
    /// Seconds it stays valid (default a day).
    #[serde(default = "a_day")]
    pub expires_in_secs: u64,
}

fn one() -> u32 {
    1
}

fn a_day() -> u64 {
    24 * 3600
}

/// Body of `POST /api/workers/enroll`.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The worker's stable id (`STATE_DIR/worker_id`).
    pub worker_id: String,
    /// Host name, for the audit trail.
    #[serde(default)]
    pub hostname: String,
}

/// The join tokens and credentials, in memory (written to the store first).
#[derive(Debug, Default)]
pub struct Enrolment {
    inner: RwLock<Inner>,
    /// Serialises enrolments, so a token's uses are checked and spent in one step.
    writer: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Join tokens by the hash of the token.
    tokens: HashMap<String, EnrollTokenRecord>,
    /// Credentials by worker id.
    credentials: HashMap<String, CredentialRecord>,
    /// Worker id by the hash of its credential.
    by_secret: HashMap<String, String>,
}

impl Inner {
    fn insert_credential(&mut self, credential: CredentialRecord) {
        if let Some(old) = self.credentials.get(&credential.worker_id) {
            self.by_secret.remove(&old.secret_sha256);
        }
        self.by_secret.insert(
            credential.secret_sha256.clone(),
            credential.worker_id.clone(),
        );
        self.credentials
            .insert(credential.worker_id.clone(), credential);
    }
}

impl Enrolment {
    /// The stored join tokens and credentials.
    pub fn load(store: &dyn crate::store::Store) -> crate::store::StoreResult<Self> {
        let mut inner = Inner::default();
        for token in store.enroll_tokens()? {
            inner.tokens.insert(token.token_sha256.clone(), token);
        }
        for credential in store.credentials()? {
            inner.insert_credential(credential);
        }
        Ok(Enrolment {
            inner: RwLock::new(inner),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The enrolled worker a bearer credential belongs to: `None` when it is none of theirs,
    /// `Err` when it was revoked.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<EnrolResult<Caller>> {
        let secret = authorization?.strip_prefix("Bearer ")?.trim();
        let inner = read_lock(&self.inner);
        let worker_id = inner.by_secret.get(&sha256_hex(secret))?;
        let credential = inner.credentials.get(worker_id)?;
        Some(match credential.revoked_at {
            Some(_) => Err(EnrolError::CredentialRevoked {
                worker_id: worker_id.clone(),
            }),
            None => Ok(Caller::Enrolled(worker_id.clone())),
        })
    }

    /// Whether the bearer of `authorization` is a join token this server issued (in any state).
    pub fn knows_join_token(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|token| {
                read_lock(&self.inner)
                    .tokens
                    .contains_key(&sha256_hex(token.trim()))
            })
    }

    /// Whether `worker_id` holds a live credential.
    fn is_enrolled(&self, worker_id: &str) -> bool {
        read_lock(&self.inner)
            .credentials
            .get(worker_id)
            .is_some_and(|c| c.revoked_at.is_none())
    }
}

/// Hex SHA-256 of a secret, as stored.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `bytes` random bytes, hex.
fn random_hex(bytes: usize) -> EnrolResult<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::getrandom(&mut buffer).map_err(|e| {
        EnrolError::InvalidJoinTokenRequest(format!("no randomness available: {e}"))
    })?;
    Ok(hex::encode(buffer))
}

fn valid_worker_id(worker_id: &str) -> bool {
    !worker_id.is_empty()
        && worker_id.len() <= 128
        && worker_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn time_text(unix: i64) -> String {
    Timestamp::from_unix(unix).map_or_else(|| unix.to_string(), |t| t.to_string())
}

/// The state of a join token, as listed.
fn token_state(token: &EnrollTokenRecord, now_secs: i64) -> &'static str {
    if token.revoked_at.is_some() {
        "revoked"
    } else if token.uses >= token.max_uses {
        "used_up"
    } else if now_secs >= token.expires_at {
        "expired"
    } else {
        "active"
    }
}

impl App {
    /// Makes a join token; the answer holds the token, which is never shown again.
    pub async fn create_join_token(
        &self,
        request: CreateJoinToken,
        actor: &str,
    ) -> EnrolResult<serde_json::Value> {
        let channel = request.channel.unwrap_or_default();
        if !channel.is_empty() {
            self.require_channel(&channel)?;
        }
        if request.uses == 0 || request.uses > MAX_TOKEN_USES {
            return Err(EnrolError::InvalidJoinTokenRequest(format!(
                "uses {}: give 1 to {MAX_TOKEN_USES}",
                request.uses
            )));
        }
        if request.expires_in_secs == 0 || request.expires_in_secs > MAX_TOKEN_LIFETIME_SECS {
            return Err(EnrolError::InvalidJoinTokenRequest(format!(
                "expires in {} s: give 1 s to {} days",
                request.expires_in_secs,
                MAX_TOKEN_LIFETIME_SECS / 86_400
            )));
        }
        let now_secs = now().unix();
        let token = format!("{JOIN_TOKEN_PREFIX}{}", random_hex(32)?);
        let record = EnrollTokenRecord {
            id: random_hex(6)?,
            token_sha256: sha256_hex(&token),
            channel: channel.clone(),
            max_uses: request.uses,
            uses: 0,
            expires_at: now_secs
                .saturating_add(i64::try_from(request.expires_in_secs).unwrap_or(i64::MAX)),
            created_at: now_secs,
            created_by: actor.to_owned(),
            revoked_at: None,
        };
        let audit = AuditRecord {
            at: now_secs,
            kind: "enroll_token_create".to_owned(),
            actor: actor.to_owned(),
            channel: channel.clone(),
            version: String::new(),
            detail: format!(
                "join token {} for {} worker(s), expires {}",
                record.id,
                record.max_uses,
                time_text(record.expires_at)
            ),
        };
        let stored = record.clone();
        self.db(move |store| store.add_enroll_token(&stored, &audit))
            .await?;
        let answer = serde_json::json!({
            "id": record.id, "token": token, "channel": (!channel.is_empty()).then_some(&channel),
            "uses": record.max_uses, "expires": time_text(record.expires_at),
        });
        write_lock(&self.enrolment.inner)
            .tokens
            .insert(record.token_sha256.clone(), record);
        tracing::info!(%actor, "join token created");
        Ok(answer)
    }

    /// Every join token (never the tokens themselves), oldest first.
    pub fn list_join_tokens(&self) -> serde_json::Value {
        let now_secs = now().unix();
        let inner = read_lock(&self.enrolment.inner);
        let mut tokens: Vec<&EnrollTokenRecord> = inner.tokens.values().collect();
        tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        serde_json::json!({
            "enroll_tokens": tokens.into_iter().map(|t| serde_json::json!({
                "id": t.id, "channel": (!t.channel.is_empty()).then_some(&t.channel),
                "uses": t.uses, "max_uses": t.max_uses, "expires": time_text(t.expires_at),
                "created_at": time_text(t.created_at), "created_by": t.created_by,
                "state": token_state(t, now_secs),
            })).collect::<Vec<_>>(),
        })
    }

    /// Revokes join token `id`: no worker enrols with it any more (those it enrolled stay).
    pub async fn revoke_join_token(&self, id: &str, actor: &str) -> EnrolResult<()> {
        let _writer = self.enrolment.writer.lock().await;
        let known = read_lock(&self.enrolment.inner)
            .tokens
            .values()
            .any(|t| t.id == id);
        if !known {
            return Err(EnrolError::UnknownJoinTokenId { id: id.to_owned() });
        }
        let at = now().unix();
        let audit = AuditRecord {
            at,
            kind: "enroll_token_revoke".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: String::new(),
            detail: format!("join token {id} revoked"),
        };
        let owned = id.to_owned();
        self.db(move |store| store.revoke_enroll_token(&owned, at, &audit))
            .await?;
        for token in write_lock(&self.enrolment.inner).tokens.values_mut() {
            if token.id == id {
                token.revoked_at.get_or_insert(at);
            }
        }
        tracing::info!(%id, %actor, "join token revoked");
        Ok(())
    }

    /// Enrols a worker with a join token (the bearer of `authorization`): its new credential,
    /// shown once.
    pub async fn enrol(
        &self,
        authorization: Option<&str>,
        request: EnrolRequest,
    ) -> EnrolResult<serde_json::Value> {
        let join_token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(EnrolError::UnknownJoinToken)?;
        let _writer = self.enrolment.writer.lock().await;
        let token = read_lock(&self.enrolment.inner)
            .tokens
            .get(&sha256_hex(join_token))
            .cloned()
            .ok_or(EnrolError::UnknownJoinToken)?;
        let now_secs = now().unix();
        if token.revoked_at.is_some() {
            return Err(EnrolError::JoinTokenRevoked { id: token.id });
        }
        if token.uses >= token.max_uses {
            return Err(EnrolError::JoinTokenUsedUp {
                id: token.id,
                uses: token.max_uses,
            });
        }
        if now_secs >= token.expires_at {
            return Err(EnrolError::JoinTokenExpired {
                id: token.id,
                expires: time_text(token.expires_at),
            });
        }
        if !valid_worker_id(&request.worker_id) {
            return Err(EnrolError::InvalidWorkerId {
                worker_id: request.worker_id,
            });
        }
        if self.enrolment.is_enrolled(&request.worker_id) {
            return Err(EnrolError::AlreadyEnrolled {
                worker_id: request.worker_id,
            });
        }
        let secret = format!("{CREDENTIAL_PREFIX}{}", random_hex(32)?);
        let credential = CredentialRecord {
            worker_id: request.worker_id.clone(),
            secret_sha256: sha256_hex(&secret),
            channel: token.channel.clone(),
            token_id: token.id.clone(),
            enrolled_at: now_secs,
            revoked_at: None,
        };
        let audit = AuditRecord {
            at: now_secs,
            kind: "worker_enroll".to_owned(),
            actor: request.worker_id.clone(),
            channel: token.channel.clone(),
            version: String::new(),
            detail: format!(
                "worker {} enrolled with join token {} (host {:?})",
                request.worker_id, token.id, request.hostname
            ),
        };
        let stored = credential.clone();
        self.db(move |store| store.enrol(&stored, &audit)).await?;
        {
            let mut inner = write_lock(&self.enrolment.inner);
            if let Some(spent) = inner.tokens.get_mut(&token.token_sha256) {
                spent.uses += 1;
            }
            inner.insert_credential(credential);
        }
        tracing::info!(worker_id = %request.worker_id, token = %token.id, "worker enrolled");
        Ok(serde_json::json!({
            "worker_id": request.worker_id,
            "credential": secret,
            "channel": (!token.channel.is_empty()).then_some(&token.channel),
        }))
    }

    /// Revokes `worker_id`'s credential (`worker forget`); false when it has none.
    pub(super) async fn revoke_credential(&self, worker_id: &str) -> crate::error::Result<bool> {
        let _writer = self.enrolment.writer.lock().await;
        let at = now().unix();
        let owned = worker_id.to_owned();
        let revoked = self
            .db(move |store| store.revoke_credential(&owned, at))
            .await?;
        if let Some(credential) = write_lock(&self.enrolment.inner)
            .credentials
            .get_mut(worker_id)
        {
            credential.revoked_at.get_or_insert(at);
        }
        Ok(revoked)
    }

    /// May `caller` speak for `worker_id` (following `channel`, when the request names one)?
    /// An enrolled credential only for its own worker, on the channel of its join token if that
    /// named one; the shared worker token only for workers that are not enrolled.
    pub fn check_attribution(
        &self,
        caller: &Caller,
        worker_id: &str,
        channel: Option<&str>,
    ) -> EnrolResult<()> {
        match caller {
            Caller::Enrolled(own) => {
                if own != worker_id {
                    return Err(EnrolError::WorkerMismatch {
                        reason: format!(
                            "this credential belongs to worker {own}: it cannot speak for worker {worker_id:?}"
                        ),
                    });
                }
                let bound = read_lock(&self.enrolment.inner)
                    .credentials
                    .get(own)
                    .map(|c| c.channel.clone())
                    .unwrap_or_default();
                match channel {
                    Some(asked) if !bound.is_empty() && asked != bound => {
                        Err(EnrolError::ChannelMismatch {
                            worker_id: own.clone(),
                            bound,
                            asked: asked.to_owned(),
                        })
                    }
                    _ => Ok(()),
                }
            }
            Caller::Worker(_) if self.enrolment.is_enrolled(worker_id) => {
                Err(EnrolError::WorkerMismatch {
                    reason: format!(
                        "worker {worker_id} is enrolled: only its own credential speaks for it, not the shared worker token"
                    ),
                })
            }
            // Admin and viewer tokens never pass `require_worker`; nothing to attribute.
            Caller::Worker(_) | Caller::Admin(_) | Caller::Viewer(_) => Ok(()),
        }
    }

    /// Records that an enrolled worker fetched artifact `sha256` (the shared token: nothing).
    pub async fn record_download(&self, caller: &Caller, sha256: &str) -> crate::error::Result<()> {
        let Caller::Enrolled(worker_id) = caller else {
            return Ok(());
        };
        let (worker_id, sha256, at) = (worker_id.clone(), sha256.to_owned(), now().unix());
        self.db(move |store| store.record_download(&worker_id, &sha256, at))
            .await
    }

    /// Does a report by `caller` for `worker_id` about `to_version` count towards auto-halt and
    /// the stable gate? With the shared worker token: yes, as it always did (whoever holds it is
    /// trusted for every worker id: the weakness of that mode, see DEPLOYMENT.md). With an
    /// enrolled credential: only when that worker downloaded one of the release's artifacts.
    pub async fn report_counts(
        &self,
        caller: &Caller,
        to_version: &str,
    ) -> crate::error::Result<bool> {
        let Caller::Enrolled(worker_id) = caller else {
            return Ok(true);
        };
        let artifacts: Vec<String> = read_lock(&self.releases)
            .get(to_version)
            .map(|r| {
                r.doc
                    .signed
                    .artifacts
                    .iter()
                    // A patch (delta update) is as much a download of the release as the full file.
                    .flat_map(|a| {
                        std::iter::once(a.sha256.clone())
                            .chain(a.deltas.iter().map(|d| d.patch_sha256.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if artifacts.is_empty() {
            return Ok(false);
        }
        let worker_id = worker_id.clone();
        self.db(move |store| store.downloaded_any(&worker_id, &artifacts))
            .await
    }
}
