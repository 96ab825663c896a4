//! Routes of the worker and admin APIs, with authentication, request ids, JSON logs and metrics.
//!
//! [`envelope`] is the one place that turns the domain's [`crate::error::Error`]s into HTTP
//! statuses and the `{"error": ..., "reason": ...}` body; [`auth`] says who is calling;
//! [`worker_api`], [`admin_api`] and [`enrol_api`] hold the handlers, each annotated with
//! `#[utoipa::path]`; [`schemas`] the bodies' types. [`router`] adds every route with
//! `utoipa_axum::routes!`, which builds the router and the OpenAPI document (`/openapi.json`,
//! [`crate::openapi`]) from the same handlers, so neither can list a route the other lacks.

use std::sync::{Arc, OnceLock};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::{Json, Router};
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
use envelope::observe;
pub use envelope::{ApiError, ApiJson};

/// Shared state of the handlers: one `Arc`, because axum clones the state into every layer
/// and handler of every request (`Route` clones its boxed service per call), and cloning a
/// `CancellationToken` takes a lock. Profiled under `scripts/bench-server.sh`: the three-field
/// struct's clones and drops were about 4 % of a 304's samples.
#[derive(Debug, Clone)]
pub struct Ctx(Arc<CtxInner>);

/// What [`Ctx`] shares.
#[derive(Debug)]
pub struct CtxInner {
    /// The server.
    pub app: Arc<App>,
    /// Cancelled on shutdown: long polls return at once.
    pub shutdown: CancellationToken,
    /// `--worker-rate-limit` on `report` and `register`, per credential.
    pub rate_limit: WorkerRateLimit,
    /// What `/openapi.json` serves, set once the router (whose routes it describes) is built.
    openapi: OnceLock<Arc<str>>,
}

impl std::ops::Deref for Ctx {
    type Target = CtxInner;

    fn deref(&self) -> &CtxInner {
        &self.0
    }
}

impl Ctx {
    /// The handlers' state for `app`, with its rate limits.
    pub fn new(app: Arc<App>, shutdown: CancellationToken) -> Self {
        let rate_limit =
            WorkerRateLimit::new(app.config.worker_rate_limit, app.config.worker_rate_burst);
        Ctx(Arc::new(CtxInner {
            app,
            shutdown,
            rate_limit,
            openapi: OnceLock::new(),
        }))
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
    let served: Arc<str> = Arc::from(serde_json::to_string_pretty(&document).unwrap_or_else(|e| {
        // Only a non-string map key could fail; there is none in the document.
        tracing::error!(error = %e, "serialising the OpenAPI document");
        String::from("{}")
    }));
    // A second router over the same state describes the same routes.
    let _ = ctx.openapi.set(served);
    let request_id = header::HeaderName::from_static("x-request-id");
    // One middleware per route (`observe`: envelope, metrics, refusal logs): it needs the
    // matched route, which only exists inside the router. The rest wraps the router once, not
    // each route: a layer added with `Router::layer` is cloned, boxed service and all, on every
    // request (`scripts/bench-server.sh`, `wiki/benchmarks/server.md`).
    let routes = routes
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(ctx.clone(), observe))
        .with_state(ctx.clone());
    let whole = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // Big enough for what `small_bodies` lets through; the upload streams its body.
        .layer(DefaultBodyLimit::max(ctx.app.config.max_body_bytes))
        .service(routes);
    let router = Router::new().fallback_service(whole);
    (router, document)
}

/// The path of the fleet's poll, the one route without a request span.
const POLL_PATH: &str = "/api/worker-updates/latest";

/// The span of a request (`request_id`, `method`, `uri` on every log line it causes), except
/// for the fleet's poll, `GET /api/worker-updates/latest`: there a span was the largest single
/// cost of a 304 (the JSON log layer formats its fields when it is created; measured with
/// `scripts/bench-server.sh`: 42 k -> 56 k req/s), and the poll logs nothing but a refusal,
/// which [`envelope::observe`] logs with those fields itself.
fn request_span(request: &Request) -> tracing::Span {
    if request.uri().path() == POLL_PATH {
        return tracing::Span::none();
    }
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = id, method = %request.method(), uri = request.uri().path())
}

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
async fn openapi(State(ctx): State<Ctx>) -> impl IntoResponse {
    let document = ctx.openapi.get().map_or("{}", |d| d);
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    /// The route without a request span is the poll route itself: a renamed route would
    /// otherwise quietly get its span back, or lose another route's.
    #[test]
    fn the_span_less_path_is_the_poll_route() {
        assert_eq!(
            <super::worker_api::__path_latest as utoipa::Path>::path(),
            super::POLL_PATH
        );
    }
}
