//! Admin read routes the web console needs beyond `GET /api/admin/status`
//! ([`crate::state::console_views`]): a channel's rollout progress over time and the inventory
//! page by page. Both are plain admin API routes (viewer tokens may read them), so the CLI or a
//! script can use them too.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, Ctx};
use crate::state::console_views::WorkersQuery;

/// `GET /api/admin/channels/{channel}/history`: how many workers of the channel ran each
/// version over time, and the channel's promotions, halts and resumes.
pub(super) async fn channel_history(
    State(ctx): State<Ctx>,
    Path(channel): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(ctx.app.channel_history(&channel).await?).into_response())
}

/// `GET /api/admin/workers?offset=&limit=&channel=&version=&worker_id=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkersParams {
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    worker_id: Option<String>,
}

/// One page of the inventory, by worker id (`next_offset` names the next page).
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
