//! Admin read routes the web console needs beyond `GET /api/admin/status`
//! ([`crate::state::console_views`]): a channel's rollout progress over time and the inventory
//! page by page. Both are plain admin API routes (viewer tokens may read them), so the CLI or a
//! script can use them too.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, Ctx};
use crate::state::console_views::{ChannelHistory, WorkersPage, WorkersQuery};

/// `GET /api/admin/channels/{channel}/history`: how many workers of the channel ran each
/// version over time, and the channel's promotions, halts and resumes.
#[utoipa::path(get, path = "/api/admin/channels/{channel}/history", tag = "admin",
    security(("adminToken" = []), ("viewerToken" = [])),
    params(("channel" = String, Path, description = "the channel")),
    responses((status = 200, description = "workers per version over time and the channel's actions", body = ChannelHistory)))]
pub(super) async fn channel_history(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.channel_history(&channel).await?).into_response())
}

/// `GET /api/admin/workers?offset=&limit=&channel=&version=&worker_id=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkersParams {
    /// First index, 0-based, in worker id order (default 0).
    #[serde(default)]
    offset: Option<usize>,
    /// Page size (default 100, 1 to 1000).
    #[serde(default)]
    limit: Option<usize>,
    /// Only workers following this channel.
    #[serde(default)]
    channel: Option<String>,
    /// Only workers running this version.
    #[serde(default)]
    version: Option<String>,
    /// Only this worker.
    #[serde(default)]
    worker_id: Option<String>,
}

/// One page of the inventory, by worker id (`next_offset` names the next page).
#[utoipa::path(get, path = "/api/admin/workers", tag = "admin",
    security(("adminToken" = []), ("viewerToken" = [])),
    params(WorkersParams),
    responses((status = 200, description = "one page of the inventory", body = WorkersPage)))]
pub(super) async fn workers(
    State(ctx): State<Ctx>,
    Query(params): Query<WorkersParams>,
) -> Result<Response, ApiError> {
    let nonempty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let query = WorkersQuery {
        offset: params.offset.unwrap_or(0),
        limit: params.limit,
        channel: nonempty(params.channel),
        version: nonempty(params.version),
        worker_id: nonempty(params.worker_id),
    };
    Ok(Json(ctx.app.workers_page(&query)).into_response())
}
