//! The HTTP routes of one runner instance, as an ESUP Manager 1.7 expects them.
//!
//! Open: `GET /`, `/runner/health`, `/runner/ping`, `/runner/status`. Every `/task/*` route
//! needs the token in `X-API-Token` (checked first) or `Authorization: Bearer`, compared in
//! constant time. Errors are `{"detail": "..."}`, like the Python runner's.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::registry::{now_rfc3339, Instance, RunRequest, StartError, StopOutcome};
use crate::{paths, tasklock};

type Shared = Arc<Instance>;

fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": message.into() }))).into_response()
}

/// The router of one instance.
pub fn router(instance: Shared) -> Router {
    let tasks = Router::new()
        .route("/task/run", post(run))
        .route("/task/status/{id}", get(status))
        .route("/task/result/{id}", get(result))
        .route("/task/result/{id}/file/{*path}", get(result_file))
        .route("/task/stop/{id}", post(stop))
        .route("/task/delete/{id}", delete(remove))
        .route_layer(middleware::from_fn_with_state(
            instance.clone(),
            authenticate,
        ));
    Router::new()
        .route("/", get(root))
        .route("/runner/health", get(health))
        .route("/runner/ping", get(ping))
        .route("/runner/status", get(runner_status))
        .merge(tasks)
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .with_state(instance)
}

/// The token a request carries: `X-API-Token` first, then `Authorization: Bearer`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers.get("x-api-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim());
    }
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

async fn authenticate(State(instance): State<Shared>, request: Request, next: Next) -> Response {
    match presented_token(request.headers()) {
        None | Some("") => detail(StatusCode::UNAUTHORIZED, "Missing authentication token"),
        Some(token) if bool::from(token.as_bytes().ct_eq(instance.runner.token.as_bytes())) => {
            next.run(request).await
        }
        Some(_) => detail(StatusCode::UNAUTHORIZED, "Invalid or expired token"),
    }
}

fn task_types(instance: &Instance) -> Vec<&'static str> {
    instance.task_types.iter().map(|t| t.as_str()).collect()
}

async fn root(State(instance): State<Shared>) -> Response {
    Json(json!({
        "name": "worker-agent",
        "description": "ESUP runner (worker-agent, self-updating)",
        "version": instance.runner.config.runner_protocol_version,
        "agent_version": instance.runner.version,
        "runner_instance_id": instance.index,
        "runner_id": instance.runner_id,
        "task_types": task_types(&instance),
    }))
    .into_response()
}

async fn health(State(instance): State<Shared>) -> Response {
    Json(json!({
        "status": "healthy",
        "runner_instance_id": instance.index,
        "runner_id": instance.runner_id,
        "registered": instance.is_registered(),
        "timestamp": now_rfc3339(),
    }))
    .into_response()
}

async fn ping(State(instance): State<Shared>) -> Response {
    Json(json!({
        "runner_instance_id": instance.index,
        "runner_id": instance.runner_id,
        "available": instance.available(),
        "registered": instance.is_registered(),
        "task_types": task_types(&instance),
    }))
    .into_response()
}

async fn runner_status(State(instance): State<Shared>) -> Response {
    Json(json!({
        "runner_instance_id": instance.index,
        "runner_id": instance.runner_id,
        "url": instance.url,
        "available": instance.available(),
        "registered": instance.is_registered(),
        "draining": instance.runner.gate.draining(),
        "current_task": instance.current_task(),
        "task_types": task_types(&instance),
        "protocol_version": instance.runner.config.runner_protocol_version,
        "agent_version": instance.runner.version,
    }))
    .into_response()
}

async fn run(State(instance): State<Shared>, body: Bytes) -> Response {
    let request: RunRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid request body: {error}"),
            )
        }
    };
    let task_id = request.task_id.clone();
    match instance.start(request) {
        Ok(()) => Json(json!({ "status": "started", "task_id": task_id })).into_response(),
        Err(StartError::NotRegistered) => detail(
            StatusCode::SERVICE_UNAVAILABLE,
            StartError::NotRegistered.to_string(),
        ),
        Err(StartError::Busy) => detail(StatusCode::BAD_REQUEST, StartError::Busy.to_string()),
        Err(StartError::Invalid(message)) => detail(StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(StartError::Conflict(message)) => detail(StatusCode::CONFLICT, message),
        Err(StartError::NoSpace(message)) => detail(StatusCode::INSUFFICIENT_STORAGE, message),
    }
}

fn invalid_id(id: &str) -> Option<Response> {
    (!paths::valid_task_id(id)).then(|| detail(StatusCode::BAD_REQUEST, "Invalid task id"))
}

async fn status(State(instance): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(refusal) = invalid_id(&id) {
        return refusal;
    }
    match instance.status(&id) {
        Some(view) => Json(view).into_response(),
        None => Json(json!({ "task_id": id, "status": "not_found" })).into_response(),
    }
}

async fn result(State(instance): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(refusal) = invalid_id(&id) {
        return refusal;
    }
    let manifest = instance.workspace(&id).join("manifest.json");
    match tokio::fs::read(&manifest).await {
        Ok(bytes) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(_) => detail(StatusCode::NOT_FOUND, "Result not found"),
    }
}

async fn result_file(
    State(instance): State<Shared>,
    Path((id, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    if let Some(refusal) = invalid_id(&id) {
        return refusal;
    }
    let Some(file) = paths::result_file(&instance.workspace(&id).join("output"), &path) else {
        return detail(StatusCode::BAD_REQUEST, "Invalid file path");
    };
    // Regular files only: never a symbolic link (it could point out of the workspace).
    match tokio::fs::symlink_metadata(&file).await {
        Ok(meta) if meta.is_file() => {}
        _ => return detail(StatusCode::NOT_FOUND, "File not found"),
    }
    match ServeFile::new_with_mime(&file, &mime::APPLICATION_OCTET_STREAM)
        .oneshot(request)
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(error) => detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serving {path}: {error}"),
        ),
    }
}

async fn stop(State(instance): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(refusal) = invalid_id(&id) {
        return refusal;
    }
    match instance.stop(&id) {
        StopOutcome::Requested {
            terminated_any_process,
        } => (
            StatusCode::ACCEPTED,
            Json(json!({
                "task_id": id,
                "status": "stop_requested",
                "termination_attempted": true,
                "terminated_any_process": terminated_any_process,
            })),
        )
            .into_response(),
        StopOutcome::AlreadyTerminal(current) => Json(json!({
            "task_id": id,
            "status": "already_terminal",
            "current_status": current.as_str(),
        }))
        .into_response(),
        StopOutcome::Unknown => detail(StatusCode::NOT_FOUND, "Task not found"),
    }
}

async fn remove(State(instance): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(refusal) = invalid_id(&id) {
        return refusal;
    }
    if instance.is_running(&id) {
        return detail(StatusCode::CONFLICT, "Task is running: stop it first");
    }
    // Held while deleting: a task of this id on another instance sharing STORAGE_DIR keeps its
    // workspace.
    let _lock = match tasklock::try_lock(&instance.runner.config.storage_dir, &id) {
        Ok(lock) => lock,
        Err(error @ tasklock::LockError::Held(_)) => {
            instance.runner.metrics.refused(&error.to_string());
            tracing::warn!(task_id = %id, reason = "task_locked", "delete refused: the task runs on another instance");
            return detail(StatusCode::CONFLICT, error.to_string());
        }
        Err(error) => return detail(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let workspace = instance.workspace(&id);
    if !workspace.exists() {
        instance.forget(&id);
        return detail(StatusCode::NOT_FOUND, "Task not found");
    }
    match tokio::fs::remove_dir_all(&workspace).await {
        Ok(()) => {
            instance.forget(&id);
            Json(json!({ "task_id": id, "status": "deleted" })).into_response()
        }
        Err(error) => detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("deleting task {id}: {error}"),
        ),
    }
}
