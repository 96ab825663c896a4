//! The browsable API page at `/docs`: a plain HTML/JS page (embedded in the binary with
//! `include_str!`, no build step, no inline code) that renders the generated `/openapi.json`
//! (operations by tag, parameters, request and response schemas) and has a "Try it" form per
//! operation, sending the console's token (`sessionStorage`) as `Authorization: Bearer`. Served
//! with the console's security headers (strict CSP, no framing).

use axum::middleware;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::console::{asset, security_headers};

/// The page.
const INDEX: &str = include_str!("../api-docs/index.html");
/// Its script.
const SCRIPT: &str = include_str!("../api-docs/api-docs.js");
/// Its style sheet.
const STYLE: &str = include_str!("../api-docs/api-docs.css");

/// `/docs` and its two assets, with the console's security headers.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::default()
        .routes(routes!(page))
        .routes(routes!(script))
        .routes(routes!(style))
        .layer(middleware::map_response(security_headers))
}

/// `GET /docs`: this API, browsable.
#[utoipa::path(get, path = "/docs", tag = "console",
    responses((status = 200, description = "the browsable API page", content_type = "text/html", body = String)))]
async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// The API page's script.
#[utoipa::path(get, path = "/docs/api-docs.js", tag = "console",
    responses((status = 200, description = "the API page's script", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The API page's style sheet.
#[utoipa::path(get, path = "/docs/api-docs.css", tag = "console",
    responses((status = 200, description = "the API page's style sheet", content_type = "text/css", body = String)))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
