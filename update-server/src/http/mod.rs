//! Routes of the worker and admin APIs, with authentication, request ids, JSON logs and metrics.
//!
//! [`envelope`] is the one place that turns the domain's [`crate::error::Error`]s into HTTP
//! statuses and the `{"error": ..., "reason": ...}` body; [`auth`] says who is calling;
//! [`worker_api`], [`admin_api`] and [`enrol_api`] hold the handlers, each annotated with
//! `#[utoipa::path]`; [`schemas`] the bodies' types. [`router`] adds every route with
//! `utoipa_axum::routes!`, which builds the router and the OpenAPI document (`/openapi.json`,
//! [`crate::openapi`]) from the same handlers, so neither can list a route the other lacks.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::limits::WorkerRateLimit;
use crate::state::App;

mod admin_api;
mod auth;
mod console_api;
mod enrol_api;
mod envelope;
pub mod schemas;
mod worker_api;

use auth::{rate_limit, require_admin, require_worker};
pub(crate) use auth::{unauthorized, AdminName};
use envelope::{envelope, observe};
pub use envelope::{ApiError, ApiJson};

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

/// The whole HTTP application, and the OpenAPI document of exactly its routes.
pub fn router(ctx: Ctx) -> Router {
    router_and_document(ctx).0
}

/// [`router`] with its OpenAPI document (what `/openapi.json` serves).
pub fn router_and_document(ctx: Ctx) -> (Router, utoipa::openapi::OpenApi) {
    // Every route but the artifact upload takes at most `--max-body-bytes`: a larger
    // Content-Length is refused before the handler runs, a longer chunked body when read.
    let small_bodies = RequestBodyLimitLayer::new(ctx.app.config.max_body_bytes);
    let artifact_bodies = RequestBodyLimitLayer::new(
        usize::try_from(ctx.app.config.max_artifact_bytes).unwrap_or(usize::MAX),
    );
    let rate_limited = middleware::from_fn_with_state(ctx.clone(), rate_limit);
    // Authenticated by its join token, in the handler; rate limited as one credential.
    let enrol = OpenApiRouter::default()
        .routes(routes!(enrol_api::enrol).layer(rate_limited.clone()))
        .layer(small_bodies);
    let worker = OpenApiRouter::default()
        .routes(routes!(worker_api::latest))
        .routes(routes!(worker_api::root_document))
        .routes(routes!(worker_api::artifact))
        .routes(routes!(worker_api::register).layer(rate_limited.clone()))
        .routes(routes!(worker_api::report).layer(rate_limited))
        .layer(small_bodies)
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_worker));
    let admin = OpenApiRouter::default()
        .routes(routes!(
            admin_api::publish_release,
            admin_api::list_releases
        ))
        .routes(routes!(admin_api::list_channels, admin_api::create_channel))
        .routes(routes!(admin_api::delete_channel))
        .routes(routes!(admin_api::promote))
        .routes(routes!(admin_api::plan))
        .routes(routes!(admin_api::halt))
        .routes(routes!(admin_api::resume))
        .routes(routes!(admin_api::rollback))
        .routes(routes!(admin_api::publish_root))
        .routes(routes!(admin_api::status))
        .routes(routes!(admin_api::audit))
        .routes(routes!(auth::session))
        .routes(routes!(console_api::channel_history))
        .routes(routes!(console_api::workers))
        .routes(routes!(admin_api::forget_worker))
        .routes(routes!(
            enrol_api::create_join_token,
            enrol_api::list_join_tokens
        ))
        .routes(routes!(enrol_api::revoke_join_token))
        .layer(small_bodies)
        // Added after the small-body layer, so only `--max-artifact-bytes` applies to it.
        .routes(routes!(admin_api::upload_artifact).layer(artifact_bodies))
        .route_layer(middleware::from_fn_with_state(ctx.clone(), require_admin))
        // Outside authentication: another site's request is refused before its token is read.
        .route_layer(middleware::from_fn(crate::console::same_origin));
    let open = OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
        .layer(small_bodies);
    let (routes, document) = open
        .merge(worker)
        .merge(enrol)
        .merge(admin)
        .merge(crate::console::routes())
        .merge(crate::api_docs::routes())
        .split_for_parts();
    let document = crate::openapi::finish(document);
    let served = OpenApiJson(Arc::from(
        serde_json::to_string_pretty(&document).unwrap_or_else(|e| {
            // Only a non-string map key could fail; there is none in the document.
            tracing::error!(error = %e, "serialising the OpenAPI document");
            String::from("{}")
        }),
    ));
    let request_id = header::HeaderName::from_static("x-request-id");
    let router = routes
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(Extension(served))
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
        .with_state(ctx);
    (router, document)
}

/// The generated document, serialised once when the router is built.
#[derive(Debug, Clone)]
struct OpenApiJson(Arc<str>);

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "open",
    responses((status = 200, description = "the server is up", body = schemas::Health)))]
async fn healthz(State(ctx): State<Ctx>) -> Json<schemas::Health> {
    Json(schemas::Health {
        status: "ok",
        root_version: ctx.app.root_version(),
    })
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "open",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    ctx.app.refresh_fleet_metrics();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.app.metrics.render(),
    )
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "open",
    responses((status = 200, description = "this OpenAPI 3.1 document", body = Object)))]
async fn openapi(Extension(OpenApiJson(document)): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.to_string(),
    )
}
