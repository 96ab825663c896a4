//! The worker API: `/latest` (long poll, ETag), root documents, artifact downloads (Range/206),
//! register and report.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use manifests::Version;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::schemas::{Accepted, ArtifactBytes, Handshake, Latest, SignedDocument};
use super::{ApiError, ApiJson, Ctx};
use crate::api::{RegisterRequest, ReportRequest};
use crate::tokens::Caller;

/// `GET /api/worker-updates/latest?channel=&platform=&current_version=&worker_id=&wait=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LatestQuery {
    /// Channel followed.
    channel: String,
    /// Target triple.
    platform: String,
    /// Running version.
    current_version: String,
    /// Stable worker id.
    worker_id: String,
    /// Long poll: seconds to wait for a change when `If-None-Match` names the current ETag
    /// (capped by `--long-poll-max`).
    #[serde(default)]
    wait: Option<u64>,
}

#[utoipa::path(get, path = "/api/worker-updates/latest", tag = "worker",
    security(("workerToken" = [])),
    params(LatestQuery,
        ("If-None-Match" = Option<String>, Header, description = "the ETag of the answer held")),
    responses(
        (status = 200, description = "what the channel offers this worker (ETag header)", body = Latest),
        (status = 304, description = "unchanged since If-None-Match (after `wait` seconds at most)")))]
pub(super) async fn latest(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // axum's `Query` wraps the same parse in serde_path_to_error, a few per cent of a 304's
    // CPU for a path that a flat struct does not need; the message is the one `Query` gives.
    let query: LatestQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("Failed to deserialize query string: {e}")))?;
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
        .and_then(|v| v.to_str().ok());
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(ctx.app.config.long_poll_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = ctx.app.subscribe();
    loop {
        // Mark the current generation seen before reading, so no change can slip in between.
        changes.borrow_and_update();
        let cached = ctx.app.latest_body(&query.channel, &version);
        let etag =
            HeaderValue::from_str(&cached.etag).map_err(|e| ApiError::internal(e.to_string()))?;
        if if_none_match != Some(cached.etag.as_str()) {
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

#[utoipa::path(get, path = "/api/worker-updates/root/{file}", tag = "worker",
    security(("workerToken" = [])),
    params(("file" = String, Path, description = "`<version>.json`, e.g. `2.json`")),
    responses((status = 200, description = "that version of the signed root", body = SignedDocument)))]
pub(super) async fn root_document(
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

pub(super) fn check_sha256(sha256: &str) -> Result<(), ApiError> {
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

#[utoipa::path(get, path = "/api/worker-updates/artifacts/{sha256}", tag = "worker",
    security(("workerToken" = [])),
    params(("sha256" = String, Path, description = "lower-case hex SHA-256 of the artifact"),
        ("Range" = Option<String>, Header, description = "resume a download: `bytes=<from>-`")),
    responses(
        (status = 200, description = "the artifact", content_type = "application/octet-stream", body = ArtifactBytes),
        (status = 206, description = "the requested range", content_type = "application/octet-stream", body = ArtifactBytes)))]
pub(super) async fn artifact(
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

#[utoipa::path(post, path = "/api/workers/register", tag = "worker",
    security(("workerToken" = [])),
    request_body = RegisterRequest,
    responses((status = 200, description = "the handshake", body = Handshake)))]
pub(super) async fn register(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    ctx.app
        .check_attribution(&caller, &request.worker_id, Some(&request.channel))?;
    Ok(Json(ctx.app.register(request).await?).into_response())
}

#[utoipa::path(post, path = "/api/worker-updates/report", tag = "worker",
    security(("workerToken" = [])),
    request_body = ReportRequest,
    responses((status = 202, description = "stored (may trigger the auto-halt)", body = Accepted)))]
pub(super) async fn report(
    State(ctx): State<Ctx>,
    axum::Extension(caller): axum::Extension<Caller>,
    ApiJson(request): ApiJson<ReportRequest>,
) -> Result<Response, ApiError> {
    ctx.app
        .check_attribution(&caller, &request.worker_id, request.channel.as_deref())?;
    let counts = ctx.app.report_counts(&caller, &request.to_version).await?;
    ctx.app.report_counted(request, counts).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })).into_response())
}
