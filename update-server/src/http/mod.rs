//! Routes of the worker and admin APIs, with authentication, request ids, JSON logs and metrics.
//!
//! [`envelope`] is the one place that turns the domain's [`crate::error::Error`]s into HTTP
//! statuses and the `{"error": ..., "reason": ...}` body; [`auth`] says who is calling;
//! [`worker_api`], [`admin_api`] and [`enrol_api`] hold the handlers.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::limits::WorkerRateLimit;
use crate::state::App;

mod admin_api;
mod auth;
mod enrol_api;
mod envelope;
mod worker_api;

use admin_api::{
    audit, create_channel, delete_channel, forget_worker, halt, list_channels, list_releases,
    promote, publish_release, publish_root, resume, rollback, status, upload_artifact,
};
use auth::{rate_limit, require_admin, require_worker, session};
pub(crate) use auth::{unauthorized, AdminName};
use envelope::{envelope, observe};
pub use envelope::{ApiError, ApiJson};
use worker_api::{artifact, latest, register, report, root_document};

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

#[cfg(test)]
mod tests {
    use super::ROUTES;

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
