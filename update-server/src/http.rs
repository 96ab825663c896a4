//! Routes of the worker and admin APIs, with authentication, request ids, JSON logs and metrics.
//!
//! This is the one place that turns the domain's [`Error`]s into HTTP statuses and the
//! `{"error": ..., "reason": ...}` body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use manifests::{ArtifactVerifier, Version};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::services::ServeFile;
use tower_http::trace::TraceLayer;

use crate::api::{CreateChannelRequest, PromoteRequest, RegisterRequest, ReportRequest};
use crate::error::{Error, ErrorKind};
use crate::limits::WorkerRateLimit;
use crate::state::App;
use crate::store::AuditFilter;
use crate::tokens::Caller;

mod enrol_api;

/// An error as the API returns it: a status, a stable reason label and one readable sentence,
/// sent as `{"error": ..., "reason": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable label (`bad_signature`, `soak`, `not_found`, ...).
    pub reason: String,
    /// One readable sentence.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `reason` and `message`.
    pub fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match error.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Refused => StatusCode::CONFLICT,
            ErrorKind::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.reason(), error.to_string())
    }
}

impl From<manifests::Error> for ApiError {
    fn from(error: manifests::Error) -> Self {
        Error::from(error).into()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.reason, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, reason = %self.reason, detail = %self.message, "request failed");
        } else {
            tracing::info!(status = %self.status, reason = %self.reason, detail = %self.message, "request refused");
        }
        (
            self.status,
            Json(serde_json::json!({"error": self.message, "reason": self.reason})),
        )
            .into_response()
    }
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, unknown fields) are [`ApiError`]s,
/// so every error body has the same `{"error", "reason"}` shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                reason_of_status(rejection.status()),
                rejection.body_text(),
            )),
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The server.
    pub app: Arc<App>,
    /// Cancelled on shutdown: long polls return at once.
    pub shutdown: CancellationToken,
    /// `--worker-rate-limit` on `report` and `register`, per credential.
    pub rate_limit: Arc<WorkerRateLimit>,
}

impl Ctx {
    /// The handlers' state for `app`, with its rate limits.
    pub fn new(app: Arc<App>, shutdown: CancellationToken) -> Self {
        let rate_limit = Arc::new(WorkerRateLimit::new(
            app.config.worker_rate_limit,
            app.config.worker_rate_burst,
        ));
        Ctx {
            app,
            shutdown,
            rate_limit,
        }
    }
}

/// Every route the router serves, as `(method, path template)`; `/openapi.json` must list them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/"),
    ("get", "/console/console.js"),
    ("get", "/console/console.css"),
    ("get", "/api/worker-updates/latest"),
    ("get", "/api/worker-updates/root/{file}"),
    ("get", "/api/worker-updates/artifacts/{sha256}"),
    ("post", "/api/workers/register"),
    ("post", "/api/worker-updates/report"),
    ("post", "/api/admin/releases"),
    ("get", "/api/admin/releases"),
    ("put", "/api/admin/artifacts/{sha256}"),
    ("get", "/api/admin/channels"),
    ("post", "/api/admin/channels"),
    ("delete", "/api/admin/channels/{channel}"),
    ("post", "/api/admin/channels/{channel}/promote"),
    ("post", "/api/admin/channels/{channel}/halt"),
    ("post", "/api/admin/channels/{channel}/resume"),
    ("post", "/api/admin/channels/{channel}/rollback"),
    ("post", "/api/admin/roots"),
    ("get", "/api/admin/status"),
    ("get", "/api/admin/audit"),
    ("get", "/api/admin/session"),
    ("delete", "/api/admin/workers/{worker_id}"),
    ("post", "/api/workers/enroll"),
    ("post", "/api/admin/enroll-tokens"),
    ("get", "/api/admin/enroll-tokens"),
    ("delete", "/api/admin/enroll-tokens/{id}"),
];

/// The whole HTTP application.
pub fn router(ctx: Ctx) -> Router {
    // Every route but the artifact upload takes at most `--max-body-bytes`: a larger
    // Content-Length is refused before the handler runs, a longer chunked body when read.
    let small_bodies = RequestBodyLimitLayer::new(ctx.app.config.max_body_bytes);
    let artifact_bodies = RequestBodyLimitLayer::new(
        usize::try_from(ctx.app.config.max_artifact_bytes).unwrap_or(usize::MAX),
    );
    let rate_limited = middleware::from_fn_with_state(ctx.clone(), rate_limit);
    // Authenticated by its join token, in the handler; rate limited as one credential.
    let enrol = Router::new()
        .route(
            "/api/workers/enroll",
            post(enrol_api::enrol).layer(rate_limited.clone()),
        )
        .layer(small_bodies);
    let worker = Router::new()
        .route("/api/worker-updates/latest", get(latest))
        .route("/api/worker-updates/root/{file}", get(root_document))
        .route("/api/worker-updates/artifacts/{sha256}", get(artifact))
        .route(
            "/api/workers/register",
            post(register).layer(rate_limited.clone()),
        )
        .route(
            "/api/worker-updates/report",
            post(report).layer(rate_limited),
        )
        .layer(small_bodies)
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_worker));
    let admin = Router::new()
        .route(
            "/api/admin/releases",
            post(publish_release).get(list_releases),
        )
        .route(
            "/api/admin/channels",
            get(list_channels).post(create_channel),
        )
        .route("/api/admin/channels/{channel}", delete(delete_channel))
        .route("/api/admin/channels/{channel}/promote", post(promote))
        .route("/api/admin/channels/{channel}/halt", post(halt))
        .route("/api/admin/channels/{channel}/resume", post(resume))
        .route("/api/admin/channels/{channel}/rollback", post(rollback))
        .route("/api/admin/roots", post(publish_root))
        .route("/api/admin/status", get(status))
        .route("/api/admin/audit", get(audit))
        .route("/api/admin/session", get(session))
        .route("/api/admin/workers/{worker_id}", delete(forget_worker))
        .route(
            "/api/admin/enroll-tokens",
            post(enrol_api::create_join_token).get(enrol_api::list_join_tokens),
        )
        .route(
            "/api/admin/enroll-tokens/{id}",
            delete(enrol_api::revoke_join_token),
        )
        .layer(small_bodies)
        // Added after the small-body layer, so only `--max-artifact-bytes` applies to it.
        .route(
            "/api/admin/artifacts/{sha256}",
            put(upload_artifact).layer(artifact_bodies),
        )
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_admin))
        // Outside authentication: another site's request is refused before its token is read.
        .route_layer(middleware::from_fn(crate::console::same_origin));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(small_bodies);
    let request_id = header::HeaderName::from_static("x-request-id");
    open.merge(worker)
        .merge(enrol)
        .merge(admin)
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        // Big enough for what `small_bodies` lets through; the upload streams its body.
        .layer(DefaultBodyLimit::max(ctx.app.config.max_body_bytes))
        .layer(middleware::from_fn(envelope))
        .layer(middleware::from_fn_with_state(ctx.clone(), observe))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .extensions()
                    .get::<RequestId>()
                    .and_then(|id| id.header_value().to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                tracing::info_span!("request", request_id = %id, method = %request.method(), uri = %request.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(ctx)
}

/// Counts requests and their latency by route template and status.
async fn observe(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &ctx.app.metrics;
    metrics
        .http_requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The reason label of an error status that no handler chose (a rejection by axum or a layer).
fn reason_of_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::RANGE_NOT_SATISFIABLE => "range",
        status if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Longest text of a rejection kept as the envelope's `error`.
const REJECTION_TEXT_LIMIT: usize = 1024;

/// Gives every error answer the `{"error", "reason"}` body: handlers already do, but axum's own
/// rejections (a bad query string, a wrong method, an oversized body) and tower-http's answer
/// plain text or nothing. The status and the other headers (`Allow`, ...) are kept.
async fn envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, REJECTION_TEXT_LIMIT).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
    };
    let mut rebuilt = ApiError::new(status, reason_of_status(status), text).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    rebuilt.headers_mut().extend(parts.headers);
    rebuilt
}

/// `--worker-rate-limit`: 429 `rate_limited` with `Retry-After` once a credential has used its
/// share of this route. Runs after authentication, so the key is a real credential.
async fn rate_limit(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    // `require_worker` handed down the credential it authenticated (never the secret).
    let worker = request.extensions().get::<Caller>().cloned();
    match ctx.rate_limit.check((route.to_owned(), worker)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + 1;
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this credential on {route}: retry in {seconds} s (--worker-rate-limit)"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

fn caller(ctx: &Ctx, headers: &HeaderMap) -> Option<Caller> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    ctx.app.tokens.authenticate(authorization).or_else(|| {
        ctx.app
            .enrolment
            .authenticate(authorization)
            .and_then(Result::ok)
    })
}

async fn require_worker(State(ctx): State<Ctx>, mut request: Request, next: Next) -> Response {
    match caller(&ctx, request.headers()) {
        Some(worker @ (Caller::Worker(_) | Caller::Enrolled(_))) => {
            // Handed down so the rate limit keys on this credential without authenticating again.
            request.extensions_mut().insert(worker);
            next.run(request).await
        }
        Some(Caller::Admin(_) | Caller::Viewer(_)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "an admin token is not a worker token",
        )
        .into_response(),
        None => match enrol_api::revoked_credential(&ctx, request.headers()) {
            Some(refusal) => refusal.into_response(),
            None => unauthorized(),
        },
    }
}

async fn require_admin(State(ctx): State<Ctx>, mut request: Request, next: Next) -> Response {
    match caller(&ctx, request.headers()) {
        Some(Caller::Admin(name)) => {
            request.extensions_mut().insert(Caller::Admin(name.clone()));
            request.extensions_mut().insert(AdminName(name));
            next.run(request).await
        }
        Some(Caller::Viewer(name)) => read_only(name, request, next).await,
        Some(Caller::Worker(_) | Caller::Enrolled(_)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a worker token is not an admin token",
        )
        .into_response(),
        None => unauthorized(),
    }
}

/// The admin read/write guard of a viewer token (`--viewer-token-file`): it may read (GET), every
/// action answers 403 `read_only`.
async fn read_only(name: String, mut request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::GET {
        request.extensions_mut().insert(Caller::Viewer(name));
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        "read_only",
        format!(
            "viewer token {name:?} may only read: {} {} needs an admin token",
            request.method(),
            request.uri().path()
        ),
    )
    .into_response()
}

/// `GET /api/admin/session`: who the token is and what it may do (the console hides the
/// actions of a viewer).
async fn session(axum::Extension(caller): axum::Extension<Caller>) -> Json<serde_json::Value> {
    let (name, role, may_act) = match caller {
        Caller::Admin(name) => (name, "admin", true),
        Caller::Viewer(name) => (name, "viewer", false),
        Caller::Worker(name) => (name, "worker", false),
        Caller::Enrolled(worker_id) => (worker_id, "worker", false),
    };
    Json(serde_json::json!({"name": name, "role": role, "may_act": may_act}))
}

pub(crate) fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or unknown bearer token (Authorization: Bearer <token>)",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The admin token's name, for the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct AdminName(pub(crate) String);

async fn healthz(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok", "root_version": ctx.app.root_version()}))
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    ctx.app.refresh_fleet_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.app.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
}

#[derive(Debug, Deserialize)]
struct LatestQuery {
    channel: String,
    platform: String,
    current_version: String,
    worker_id: String,
    #[serde(default)]
    wait: Option<u64>,
}

async fn latest(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<LatestQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A channel never created is a 404 with its reason, before the worker enters the inventory.
    ctx.app.require_channel(&query.channel)?;
    ctx.app
        .check_attribution(&caller, &query.worker_id, Some(&query.channel))?;
    let version: Version = query.current_version.parse().map_err(|e| {
        ApiError::bad_request(format!("current_version {:?}: {e}", query.current_version))
    })?;
    if query.worker_id.trim().is_empty() || query.platform.trim().is_empty() {
        return Err(ApiError::bad_request("worker_id and platform are required"));
    }
    // Memory only: the store learns of the sighting behind the answer (`state/sightings.rs`),
    // so a poll, a 304 above all, never waits on a database round-trip.
    ctx.app.note_seen(
        &query.worker_id,
        &query.current_version,
        &query.platform,
        &query.channel,
    );
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(ctx.app.config.long_poll_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = ctx.app.subscribe();
    loop {
        // Mark the current generation seen before reading, so no change can slip in between.
        changes.borrow_and_update();
        let cached = ctx.app.latest_body(&query.channel, &version);
        let etag =
            HeaderValue::from_str(&cached.etag).map_err(|e| ApiError::internal(e.to_string()))?;
        if if_none_match.as_deref() != Some(cached.etag.as_str()) {
            return Ok((
                [
                    (header::ETAG, etag),
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                ],
                cached.body,
            )
                .into_response());
        }
        if wait.is_zero() || tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
        let timed_out = tokio::select! {
            changed = changes.changed() => changed.is_err(),
            () = tokio::time::sleep_until(deadline) => true,
            () = ctx.shutdown.cancelled() => true,
        };
        if timed_out {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
    }
}

async fn root_document(
    State(ctx): State<Ctx>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let version: u64 = file
        .strip_suffix(".json")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("{file}: expected <version>.json")))?;
    let body = ctx
        .app
        .root_document(version)
        .ok_or_else(|| ApiError::not_found(format!("root version {version} is not known")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn check_sha256(sha256: &str) -> Result<(), ApiError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{sha256:?} is not a lower-case hex sha256"
        )))
    }
}

async fn artifact(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(sha256): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    check_sha256(&sha256)?;
    let path = ctx
        .app
        .artifact_path(&sha256)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact {sha256} is not stored")))?;
    // tower-http does Range / 206 / Accept-Ranges / If-Range.
    let response = ServeFile::new_with_mime(
        path,
        &"application/octet-stream"
            .parse()
            .map_err(|_| ApiError::internal("mime"))?,
    )
    .oneshot(request)
    .await
    .map_err(|e| ApiError::internal(format!("serving artifact: {e}")))?;
    if response.status().is_success() {
        // What makes an enrolled worker's reports about this release count.
        ctx.app.record_download(&caller, &sha256).await?;
    }
    Ok(response.map(Body::new))
}

async fn register(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    ctx.app
        .check_attribution(&caller, &request.worker_id, Some(&request.channel))?;
    Ok(Json(ctx.app.register(request).await?).into_response())
}

async fn report(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiJson(request): ApiJson<ReportRequest>,
) -> Result<Response, ApiError> {
    ctx.app
        .check_attribution(&caller, &request.worker_id, request.channel.as_deref())?;
    let counts = ctx.app.report_counts(&caller, &request.to_version).await?;
    ctx.app.report_counted(request, counts).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "accepted"})),
    )
        .into_response())
}

async fn publish_release(
    State(ctx): State<Ctx>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let published = ctx.app.publish_release(body, &actor).await?;
    let status = if published.newly_stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(published.body)).into_response())
}

async fn list_releases(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(ctx.app.list_releases())
}

async fn upload_artifact(
    State(ctx): State<Ctx>,
    Path(sha256): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    check_sha256(&sha256)?;
    let expected = ctx.app.expected_artifact(&sha256).ok_or_else(|| {
        ApiError::not_found(format!(
            "no published release lists artifact {sha256}: publish the release first"
        ))
    })?;
    if ctx.app.has_artifact(&sha256) {
        return Ok((
            StatusCode::OK,
            Json(serde_json::json!({"sha256": sha256, "size": expected.size})),
        )
            .into_response());
    }
    if expected.size > ctx.app.config.max_artifact_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "size_mismatch",
            format!(
                "artifact {sha256} is {} bytes, above --max-artifact-bytes",
                expected.size
            ),
        ));
    }
    let staged = tempfile::NamedTempFile::new_in(ctx.app.incoming_dir())
        .map_err(|e| ApiError::internal(format!("staging upload: {e}")))?;
    let mut file = tokio::fs::File::from_std(
        staged
            .as_file()
            .try_clone()
            .map_err(|e| ApiError::internal(format!("staging upload: {e}")))?,
    );
    let mut verifier = ArtifactVerifier::new(&expected, format!("upload {sha256}"));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        verifier.update(&chunk)?;
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing upload: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("writing upload: {e}")))?;
    verifier.finish()?;
    ctx.app
        .commit_artifact(staged, &sha256, expected.size)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"sha256": sha256, "size": expected.size})),
    )
        .into_response())
}

async fn list_channels(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "channels": ctx.app.list_channels() }))
}

async fn create_channel(
    State(ctx): State<Ctx>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<CreateChannelRequest>,
) -> Result<Response, ApiError> {
    let created = ctx.app.create_channel(&request.name, &actor).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /api/admin/channels/<channel>?force=true`: what `worker-release channel delete
/// --force` sends to delete a channel workers still follow.
#[derive(Debug, Deserialize)]
struct DeleteChannelQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_channel(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    Query(query): Query<DeleteChannelQuery>,
) -> Result<Response, ApiError> {
    ctx.app
        .delete_channel(&channel, query.force, &actor)
        .await?;
    Ok(Json(serde_json::json!({ "deleted": channel })).into_response())
}

async fn promote(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.promote(&channel, request, &actor).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

async fn halt(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.halt(&channel, &body.reason, &actor).await?).into_response())
}

async fn resume(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.resume(&channel, &body.reason, &actor).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    directive: serde_json::Value,
    #[serde(default)]
    reason: String,
}

async fn rollback(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Response, ApiError> {
    Ok(Json(
        ctx.app
            .rollback(&channel, body.directive, &body.reason, &actor)
            .await?,
    )
    .into_response())
}

/// `POST /api/admin/roots?allow_weaker=true`: what `worker-release publish-root --allow-weaker`
/// sends to accept a root that weakens a role.
#[derive(Debug, Deserialize)]
struct RootQuery {
    #[serde(default)]
    allow_weaker: bool,
}

async fn publish_root(
    State(ctx): State<Ctx>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    Query(query): Query<RootQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let published = ctx
        .app
        .publish_root(body, &actor, query.allow_weaker)
        .await?;
    // The same root again: 200 "already published" (a retried publish is no error).
    let (status, already) = if published.newly_stored {
        (StatusCode::CREATED, false)
    } else {
        (StatusCode::OK, true)
    };
    Ok((
        status,
        Json(serde_json::json!({"version": published.version, "already_published": already})),
    )
        .into_response())
}

async fn status(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.status().await?).into_response())
}

/// `GET /api/admin/audit?limit=&channel=&kind=&since=` (`since`: RFC 3339 UTC seconds).
#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

async fn audit(
    State(ctx): State<Ctx>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let since = match &query.since {
        Some(text) => Some(
            text.parse::<manifests::Timestamp>()
                .map_err(|e| ApiError::bad_request(format!("since {text:?}: {e}")))?
                .unix(),
        ),
        None => None,
    };
    let filter = AuditFilter {
        limit: query.limit.unwrap_or(50).clamp(1, 10_000),
        channel: query.channel.filter(|c| !c.is_empty()),
        kind: query.kind.filter(|k| !k.is_empty()),
        since,
    };
    Ok(Json(ctx.app.audit(filter).await?).into_response())
}

async fn forget_worker(
    State(ctx): State<Ctx>,
    Path(worker_id): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
) -> Result<Response, ApiError> {
    ctx.app.forget_worker(&worker_id, &actor).await?;
    Ok(Json(serde_json::json!({ "forgotten": worker_id })).into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use manifests::Version;

    use super::{ApiError, ROUTES};
    use crate::error::Error;

    /// Domain errors keep the statuses and reasons clients and the CLI key on.
    #[test]
    fn domain_errors_map_to_their_statuses_and_reasons() {
        let version = Version::new(1, 2, 3);
        let cases = [
            (
                Error::MissingField { field: "worker_id" },
                StatusCode::BAD_REQUEST,
                "bad_request",
            ),
            (
                Error::NothingToChange {
                    channel: "canary".to_owned(),
                    action: "halt",
                },
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Error::NeverOnCanary {
                    version: version.clone(),
                },
                StatusCode::CONFLICT,
                "soak",
            ),
            (
                Error::CanaryFailureRate {
                    version: version.clone(),
                    failed: 1,
                    tried: 2,
                    rate: 0.5,
                    max_rate: 0.05,
                },
                StatusCode::CONFLICT,
                "failure_rate",
            ),
            (
                Error::IncompleteRelease {
                    version: version.clone(),
                    missing: vec!["ab".to_owned()],
                },
                StatusCode::CONFLICT,
                "incomplete_release",
            ),
            (
                Error::ReleaseConflict {
                    version: version.to_string(),
                },
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                Error::RootWithoutChannelKey {
                    version: 2,
                    keyid: "k".to_owned(),
                },
                StatusCode::CONFLICT,
                "channel_key",
            ),
            (
                Error::ReleaseWithoutArtifacts { version },
                StatusCode::UNPROCESSABLE_ENTITY,
                "malformed",
            ),
            (
                Error::from(manifests::Error::WrongProduct {
                    expected: "a".to_owned(),
                    offered: "b".to_owned(),
                }),
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong_product",
            ),
            (
                Error::ChannelVanished {
                    channel: "canary".to_owned(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (error, status, reason) in cases {
            let message = error.to_string();
            let api = ApiError::from(error);
            assert_eq!(
                (api.status, api.reason.as_str()),
                (status, reason),
                "{message}"
            );
            assert_eq!(api.message, message);
        }
    }

    /// The OpenAPI document lists exactly the routes served.
    #[test]
    fn openapi_document_matches_the_routes() {
        let document: serde_json::Value =
            serde_json::from_str(crate::openapi::DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().expect("paths");
        let mut documented = Vec::new();
        for (path, methods) in paths {
            for method in methods.as_object().expect("methods").keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
