//! The error envelope: [`ApiError`] (the one mapping of domain errors to HTTP statuses and the
//! `{"error": ..., "reason": ...}` body), [`ApiJson`] (JSON bodies whose rejections are
//! envelopes too), and the middleware that gives every error answer that body ([`envelope`]) and
//! counts requests ([`observe`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tower_http::request_id::RequestId;

use super::Ctx;
use crate::error::{Error, ErrorKind};

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

/// What an [`ApiError`] answer leaves in its response's extensions, for [`observe`] to log.
#[derive(Debug, Clone)]
struct Refusal {
    reason: String,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refusal = Refusal {
            reason: self.reason.clone(),
            detail: self.message.clone(),
        };
        let mut response = (
            self.status,
            Json(super::schemas::ErrorBody {
                error: self.message,
                reason: self.reason,
            }),
        )
            .into_response();
        response.extensions_mut().insert(refusal);
        response
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

/// The one middleware of every route: gives every error answer the envelope ([`envelope`]),
/// counts requests and their latency by route template and status, and logs every error
/// answer (`request refused` at info, `request failed` at error) with its request id, method
/// and path: the poll route has no request span (`super::request_span`), so the line names
/// them itself. One middleware rather than two: each layer of a route costs a clone of its
/// boxed service and a boxed future on every request.
pub(super) async fn observe(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    // `MatchedPath` is an `Arc<str>`, `Method` and `Uri` are cheap clones: no copy of the
    // request line per request.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let request_id = request.extensions().get::<RequestId>().cloned();
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let started = Instant::now();
    let response = envelope(next.run(request).await).await;
    if let Some(refusal) = response.extensions().get::<Refusal>() {
        let request_id = request_id
            .as_ref()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        let (status, path) = (response.status(), uri.path());
        if status.is_server_error() {
            tracing::error!(%status, reason = %refusal.reason, detail = %refusal.detail, request_id, %method, uri = path, "request failed");
        } else {
            tracing::info!(%status, reason = %refusal.reason, detail = %refusal.detail, request_id, %method, uri = path, "request refused");
        }
    }
    let metrics = &ctx.app.metrics;
    metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The reason label of an error status that no handler chose (a rejection by axum or a layer).
pub(super) fn reason_of_status(status: StatusCode) -> &'static str {
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
async fn envelope(response: Response) -> Response {
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use manifests::Version;

    use super::ApiError;
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
}
