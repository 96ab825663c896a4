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

use super::schemas::{
    ArtifactBytes, ArtifactStored, AuditLog, ChannelDeleted, ChannelList, ChannelListing,
    ChannelSummary, ReasonBody, ReleaseList, ReleasePublished, RollbackBody, RootPublished,
    SignedDocument, Status, WorkerForgotten,
};
use super::worker_api::check_sha256;
use super::{AdminName, ApiError, ApiJson, Ctx};
use crate::api::{CreateChannelRequest, PlanRequest, PromoteRequest};
use crate::store::AuditFilter;

/// `POST /api/admin/releases`: publish a signed release (verified against the current root).
#[utoipa::path(post, path = "/api/admin/releases", tag = "admin", security(("adminToken" = [])),
    request_body(content = SignedDocument, description = "a `release.json` signed by the release role"),
    responses(
        (status = 201, description = "stored", body = ReleasePublished),
        (status = 200, description = "already stored (or re-signed)", body = ReleasePublished)))]
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

/// `GET /api/admin/releases`.
#[utoipa::path(get, path = "/api/admin/releases", tag = "admin", security(("adminToken" = []), ("viewerToken" = [])),
    responses((status = 200, description = "every stored release and its completeness", body = ReleaseList)))]
pub(super) async fn list_releases(State(ctx): State<Ctx>) -> Json<serde_json::Value> {
    Json(ctx.app.list_releases())
}

/// `PUT /api/admin/artifacts/{sha256}`: upload an artifact a published release lists.
#[utoipa::path(put, path = "/api/admin/artifacts/{sha256}", tag = "admin", security(("adminToken" = [])),
    params(("sha256" = String, Path, description = "lower-case hex SHA-256 of the artifact")),
    request_body(content = ArtifactBytes, content_type = "application/octet-stream",
        description = "the artifact's bytes (streamed, checked against the signed hash and size; at most --max-artifact-bytes)"),
    responses(
        (status = 201, description = "stored", body = ArtifactStored),
        (status = 200, description = "already stored", body = ArtifactStored)))]
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
            Json(ArtifactStored {
                sha256,
                size: expected.size,
            }),
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
        Json(ArtifactStored {
            sha256,
            size: expected.size,
        }),
    )
        .into_response())
}

/// `GET /api/admin/channels`.
#[utoipa::path(get, path = "/api/admin/channels", tag = "admin", security(("adminToken" = []), ("viewerToken" = [])),
    responses((status = 200, description = "every created channel", body = ChannelList)))]
pub(super) async fn list_channels(State(ctx): State<Ctx>) -> Json<ChannelList> {
    Json(ChannelList {
        channels: ctx.app.list_channels(),
    })
}

/// `POST /api/admin/channels`.
#[utoipa::path(post, path = "/api/admin/channels", tag = "admin", security(("adminToken" = [])),
    request_body = CreateChannelRequest,
    responses((status = 201, description = "created", body = ChannelListing)))]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeleteChannelQuery {
    /// Delete it although workers still follow it.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/api/admin/channels/{channel}", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name"), DeleteChannelQuery),
    responses((status = 200, description = "deleted", body = ChannelDeleted)))]
pub(super) async fn delete_channel(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    Query(query): Query<DeleteChannelQuery>,
) -> Result<Response, ApiError> {
    ctx.app
        .delete_channel(&channel, query.force, &actor)
        .await?;
    Ok(Json(ChannelDeleted { deleted: channel }).into_response())
}

/// `POST /api/admin/channels/{channel}/promote`: offer a version (the stable soak gate may refuse: 409 `soak`, `failure_rate`).
#[utoipa::path(post, path = "/api/admin/channels/{channel}/promote", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name")), request_body = PromoteRequest,
    responses((status = 200, description = "the channel, re-signed", body = ChannelSummary)))]
pub(super) async fn promote(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<PromoteRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.promote(&channel, request, &actor).await?).into_response())
}

/// `POST /api/admin/channels/{channel}/plan`: roll a version out wave by wave
/// (`worker-release rollout plan`; 400 `invalid_plan`, and the stable soak gate as for promote).
#[utoipa::path(post, path = "/api/admin/channels/{channel}/plan", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name")), request_body = PlanRequest,
    responses((status = 200, description = "the channel, re-signed with its first wave", body = ChannelSummary)))]
pub(super) async fn plan(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(request): ApiJson<PlanRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.plan_rollout(&channel, request, &actor).await?).into_response())
}

/// `POST /api/admin/channels/{channel}/halt`.
#[utoipa::path(post, path = "/api/admin/channels/{channel}/halt", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name")), request_body = ReasonBody,
    responses((status = 200, description = "the channel, halted", body = ChannelSummary)))]
pub(super) async fn halt(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.halt(&channel, &body.reason, &actor).await?).into_response())
}

/// `POST /api/admin/channels/{channel}/resume`.
#[utoipa::path(post, path = "/api/admin/channels/{channel}/resume", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name")), request_body = ReasonBody,
    responses((status = 200, description = "the channel, resumed", body = ChannelSummary)))]
pub(super) async fn resume(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.resume(&channel, &body.reason, &actor).await?).into_response())
}

/// `POST /api/admin/channels/{channel}/rollback`: attach a signed rollback directive.
#[utoipa::path(post, path = "/api/admin/channels/{channel}/rollback", tag = "admin", security(("adminToken" = [])),
    params(("channel" = String, Path, description = "channel name")), request_body = RollbackBody,
    responses((status = 200, description = "the channel with the directive", body = ChannelSummary)))]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RootQuery {
    /// Accept a root that weakens a role (fewer keys or a lower threshold).
    #[serde(default)]
    allow_weaker: bool,
}

#[utoipa::path(post, path = "/api/admin/roots", tag = "admin", security(("adminToken" = [])),
    params(RootQuery),
    request_body(content = SignedDocument, description = "root N+1, signed by the keys of root N and its own"),
    responses(
        (status = 201, description = "trusted from now on", body = RootPublished),
        (status = 200, description = "already published", body = RootPublished)))]
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
        Json(RootPublished {
            version: published.version,
            already_published: already,
        }),
    )
        .into_response())
}

/// `GET /api/admin/status`.
#[utoipa::path(get, path = "/api/admin/status", tag = "admin", security(("adminToken" = []), ("viewerToken" = [])),
    responses((status = 200, description = "channels, fleet, failures of the last hour, workers", body = Status)))]
pub(super) async fn status(State(ctx): State<Ctx>) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.status().await?).into_response())
}

/// `GET /api/admin/audit?limit=&channel=&kind=&actor=&since=&until=` (`since`, `until`:
/// RFC 3339 UTC seconds, both inclusive).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// At most this many entries (default 50, 1 to 10000).
    #[serde(default)]
    limit: Option<usize>,
    /// Only this channel's.
    #[serde(default)]
    channel: Option<String>,
    /// Only this kind (`promote`, `halt`, `report`, ...).
    #[serde(default)]
    kind: Option<String>,
    /// Only entries from then on (RFC 3339 UTC seconds, inclusive).
    #[serde(default)]
    since: Option<String>,
    /// Only entries by this actor (token name; a worker id for reports).
    #[serde(default)]
    actor: Option<String>,
    /// Only entries up to then (RFC 3339 UTC seconds, inclusive).
    #[serde(default)]
    until: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", security(("adminToken" = []), ("viewerToken" = [])),
    params(AuditQuery),
    responses((status = 200, description = "audit entries and reports, newest first", body = AuditLog)))]
pub(super) async fn audit(
    State(ctx): State<Ctx>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let time = |name: &str, value: &Option<String>| match value.as_deref() {
        Some(text) if !text.is_empty() => text
            .parse::<manifests::Timestamp>()
            .map(|t| Some(t.unix()))
            .map_err(|e| ApiError::bad_request(format!("{name} {text:?}: {e}"))),
        _ => Ok(None),
    };
    let filter = AuditFilter {
        limit: query.limit.unwrap_or(50).clamp(1, 10_000),
        channel: query.channel.filter(|c| !c.is_empty()),
        kind: query.kind.filter(|k| !k.is_empty()),
        since: time("since", &query.since)?,
        actor: query.actor.filter(|a| !a.is_empty()),
        until: time("until", &query.until)?,
    };
    Ok(Json(ctx.app.audit(filter).await?).into_response())
}

/// `DELETE /api/admin/workers/{worker_id}`: forget a decommissioned worker (and revoke its credential).
#[utoipa::path(delete, path = "/api/admin/workers/{worker_id}", tag = "admin", security(("adminToken" = [])),
    params(("worker_id" = String, Path, description = "the worker's id")),
    responses((status = 200, description = "forgotten", body = WorkerForgotten)))]
pub(super) async fn forget_worker(
    State(ctx): State<Ctx>,
    Path(worker_id): Path<String>,
    axum::Extension(AdminName(actor)): axum::Extension<AdminName>,
) -> Result<Response, ApiError> {
    ctx.app.forget_worker(&worker_id, &actor).await?;
    Ok(Json(WorkerForgotten {
        forgotten: worker_id,
    })
    .into_response())
}
