//! The admin API: releases, artifact upload (streamed through `ArtifactVerifier`, staged in
//! `artifacts/incoming/`, fsync + rename), channels (create, delete, promote, halt, resume,
//! rollback), roots, status, audit and forgetting a worker.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use manifests::ArtifactVerifier;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::worker_api::check_sha256;
use super::{AdminName, ApiError, ApiJson, Ctx};
use crate::api::{CreateChannelRequest, PromoteRequest};
use crate::store::AuditFilter;

pub(super) async fn publish_release(
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

pub(super) async fn list_releases(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(ctx.app.list_releases())
}

pub(super) async fn upload_artifact(
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

pub(super) async fn list_channels(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "channels": ctx.app.list_channels() }))
}

pub(super) async fn create_channel(
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
pub(super) struct DeleteChannelQuery {
    #[serde(default)]
    force: bool,
}

pub(super) async fn delete_channel(
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

pub(super) async fn promote(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.promote(&channel, request, &actor).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    #[serde(default)]
    reason: String,
}

pub(super) async fn halt(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.halt(&channel, &body.reason, &actor).await?).into_response())
}

pub(super) async fn resume(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.resume(&channel, &body.reason, &actor).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    directive: serde_json::Value,
    #[serde(default)]
    reason: String,
}

pub(super) async fn rollback(
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
pub(super) struct RootQuery {
    #[serde(default)]
    allow_weaker: bool,
}

pub(super) async fn publish_root(
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

pub(super) async fn status(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.status().await?).into_response())
}

/// `GET /api/admin/audit?limit=&channel=&kind=&since=` (`since`: RFC 3339 UTC seconds).
#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

pub(super) async fn audit(
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

pub(super) async fn forget_worker(
    State(ctx): State<Ctx>,
    Path(worker_id): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
) -> Result<Response, ApiError> {
    ctx.app.forget_worker(&worker_id, &actor).await?;
    Ok(Json(serde_json::json!({ "forgotten": worker_id })).into_response())
}
