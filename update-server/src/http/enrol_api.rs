//! Routes of per-worker enrolment ([`crate::state::enrolment`]): the join tokens of the admin
//! API, `POST /api/workers/enroll`, and the refusals of enrolled credentials.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::schemas::{Enrolled, JoinTokenCreated, JoinTokenList, JoinTokenRevoked};
use super::{AdminName, ApiError, ApiJson, Ctx};
use crate::state::enrolment::{CreateJoinToken, EnrolError, EnrolErrorKind, EnrolRequest};

impl From<EnrolError> for ApiError {
    fn from(error: EnrolError) -> Self {
        let status = match error.kind() {
            Some(EnrolErrorKind::Invalid) => StatusCode::BAD_REQUEST,
            Some(EnrolErrorKind::Unauthorized) => StatusCode::UNAUTHORIZED,
            Some(EnrolErrorKind::Forbidden) => StatusCode::FORBIDDEN,
            Some(EnrolErrorKind::Conflict) => StatusCode::CONFLICT,
            Some(EnrolErrorKind::NotFound) => StatusCode::NOT_FOUND,
            None => match error {
                EnrolError::Domain(domain) => return domain.into(),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        ApiError::new(status, error.reason(), error.to_string())
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The refusal of a revoked enrolled credential (401 `credential_revoked`), if it is one.
pub(super) fn revoked_credential(ctx: &Ctx, headers: &HeaderMap) -> Option<ApiError> {
    match ctx.app.enrolment.authenticate(authorization(headers)) {
        Some(Err(error)) => Some(error.into()),
        _ => None,
    }
}

/// `POST /api/workers/enroll` with `Authorization: Bearer <join token>`.
#[utoipa::path(post, path = "/api/workers/enroll", tag = "enrolment",
    security(("joinToken" = [])),
    request_body = EnrolRequest,
    responses((status = 201, description = "enrolled: the worker's own credential, shown once", body = Enrolled)))]
pub(super) async fn enrol(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    body: Result<ApiJson<EnrolRequest>, ApiError>,
) -> Result<Response, ApiError> {
    // Like every protected route: no (known) join token, 401 before the body is looked at.
    if !ctx.app.enrolment.knows_join_token(authorization(&headers)) {
        return Ok(super::unauthorized());
    }
    let ApiJson(request) = body?;
    match ctx.app.enrol(authorization(&headers), request).await {
        Ok(answer) => Ok((StatusCode::CREATED, Json(answer)).into_response()),
        Err(EnrolError::UnknownJoinToken) => Ok(super::unauthorized()),
        Err(error) => Err(error.into()),
    }
}

/// `POST /api/admin/enroll-tokens`.
#[utoipa::path(post, path = "/api/admin/enroll-tokens", tag = "enrolment", security(("adminToken" = [])),
    request_body = CreateJoinToken,
    responses((status = 201, description = "the join token, shown once", body = JoinTokenCreated)))]
pub(super) async fn create_join_token(
    State(ctx): State<Ctx>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<CreateJoinToken>,
) -> Result<Response, ApiError> {
    let created = ctx.app.create_join_token(request, &actor).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /api/admin/enroll-tokens`.
#[utoipa::path(get, path = "/api/admin/enroll-tokens", tag = "enrolment", security(("adminToken" = []), ("viewerToken" = [])),
    responses((status = 200, description = "every join token (never the token itself)", body = JoinTokenList)))]
pub(super) async fn list_join_tokens(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(ctx.app.list_join_tokens())
}

/// `DELETE /api/admin/enroll-tokens/{id}`.
#[utoipa::path(delete, path = "/api/admin/enroll-tokens/{id}", tag = "enrolment", security(("adminToken" = [])),
    params(("id" = String, Path, description = "the join token's id")),
    responses((status = 200, description = "revoked", body = JoinTokenRevoked)))]
pub(super) async fn revoke_join_token(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
) -> Result<Response, ApiError> {
    ctx.app.revoke_join_token(&id, &actor).await?;
    Ok(Json(JoinTokenRevoked { revoked: id }).into_response())
}
