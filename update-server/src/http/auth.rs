//! Who is calling: [`caller`] (admin, viewer, shared worker or enrolled credential), the guards
//! of the worker and admin APIs ([`require_worker`], [`require_admin`], the viewer's
//! [`read_only`]), the per-credential rate limit, and `GET /api/admin/session`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{enrol_api, ApiError, Ctx};
use crate::tokens::Caller;

/// `--worker-rate-limit`: 429 `rate_limited` with `Retry-After` once a credential has used its
/// share of this route. Runs after authentication, so the key is a real credential.
pub(super) async fn rate_limit(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
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

pub(super) fn caller(ctx: &Ctx, headers: &HeaderMap) -> Option<Caller> {
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

pub(super) async fn require_worker(
    State(ctx): State<Ctx>,
    mut request: Request,
    next: Next,
) -> Response {
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

pub(super) async fn require_admin(
    State(ctx): State<Ctx>,
    mut request: Request,
    next: Next,
) -> Response {
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
pub(super) async fn read_only(name: String, mut request: Request, next: Next) -> Response {
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
#[utoipa::path(get, path = "/api/admin/session", tag = "admin",
    security(("adminToken" = []), ("viewerToken" = [])),
    responses((status = 200, description = "the token's name and role", body = super::schemas::Session)))]
pub(super) async fn session(
    axum::Extension(caller): axum::Extension<Caller>,
) -> Json<super::schemas::Session> {
    let (name, role, may_act) = match caller {
        Caller::Admin(name) => (name, "admin", true),
        Caller::Viewer(name) => (name, "viewer", false),
        Caller::Worker(name) => (name, "worker", false),
        Caller::Enrolled(worker_id) => (worker_id, "worker", false),
    };
    Json(super::schemas::Session {
        name,
        role,
        may_act,
    })
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
