//! The web console at `/` for release engineers: a single page (plain HTML, JS and CSS, embedded
//! in the binary with `include_str!`) that talks to the admin API with the token the user typed,
//! kept in `sessionStorage` and sent as `Authorization: Bearer`, never in a URL.
//!
//! Also the browser-facing guards: the console's security headers (a strict
//! Content-Security-Policy, no framing, no sniffing, no referrer) and [`same_origin`], which
//! refuses cross-origin browser requests to the admin API (the API sends no CORS headers), so a
//! token pasted into the console cannot be used by another site open in the same browser.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::ApiError;

/// The page.
const INDEX: &str = include_str!("../console/index.html");
/// Its script (the whole single-page application).
const SCRIPT: &str = include_str!("../console/console.js");
/// Its style sheet.
const STYLE: &str = include_str!("../console/console.css");

/// Content-Security-Policy of every console response: only this origin's own files, no inline
/// script or style, no `eval`, no plugins, no framing, forms post nowhere else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The console's routes (`/` and its two assets), with their security headers.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::default()
        .routes(routes!(index))
        .routes(routes!(script))
        .routes(routes!(style))
        .layer(middleware::map_response(security_headers))
}

/// `GET /`: the console's page.
#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "the web console", content_type = "text/html", body = String)))]
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// The console's script.
#[utoipa::path(get, path = "/console/console.js", tag = "console",
    responses((status = 200, description = "the console's script", content_type = "text/javascript", body = String)))]
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The console's style sheet.
#[utoipa::path(get, path = "/console/console.css", tag = "console",
    responses((status = 200, description = "the console's style sheet", content_type = "text/css", body = String)))]
async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// An embedded file; the assets change with the binary, so browsers always revalidate.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The headers of every page the server serves to a browser (the console and `/docs`).
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Refuses a browser request to the admin API made by another site: 403 `cross_origin` when
/// `Sec-Fetch-Site` says `cross-site` or `same-site` (another origin of the same site), or when
/// an `Origin` header names another origin than the one the request was sent to (`Host`).
/// Requests without these headers (the CLI, curl, scripts) are not browser requests and pass.
pub async fn same_origin(request: Request, next: Next) -> Response {
    match cross_origin_problem(
        request.headers(),
        request.uri().authority().map(|a| a.as_str()),
    ) {
        None => next.run(request).await,
        Some(problem) => ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!("cross-origin requests to the admin API are refused: {problem}"),
        )
        .into_response(),
    }
}

/// Why a request with `headers` sent to `authority` (HTTP/2) or `Host` is a cross-origin one.
fn cross_origin_problem(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let host = authority.or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let origin_authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (origin_authority, host) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => None,
        (_, Some(host)) => Some(format!("Origin {origin} is not this server ({host})")),
        (_, None) => Some(format!("Origin {origin} and no Host header")),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::cross_origin_problem;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    /// The CLI (no browser headers) and the console itself pass; other sites do not.
    #[test]
    fn only_same_origin_browser_requests_pass() {
        let host = [("host", "127.0.0.1:8090")];
        assert_eq!(cross_origin_problem(&headers(&host), None), None);
        let console = [
            ("host", "127.0.0.1:8090"),
            ("origin", "http://127.0.0.1:8090"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(cross_origin_problem(&headers(&console), None), None);
        for refused in [
            vec![("host", "127.0.0.1:8090"), ("origin", "http://evil.test")],
            vec![("host", "127.0.0.1:8090"), ("origin", "null")],
            vec![("host", "127.0.0.1:8090"), ("sec-fetch-site", "cross-site")],
            vec![("host", "a.example:8090"), ("sec-fetch-site", "same-site")],
            vec![("origin", "http://127.0.0.1:8090")],
        ] {
            assert!(
                cross_origin_problem(&headers(&refused), None).is_some(),
                "{refused:?}"
            );
        }
    }
}
