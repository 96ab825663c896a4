//! The worker process: serves `/metrics` and `/healthz`, registers with the update server (or,
//! when it does not answer, goes on with the cached handshake: [`crate::handshake`]), starts
//! the ESUP runner layer, announces readiness, reports outcomes, and runs the update loop. The runner layer and the updater share the [`TaskGate`]: an update waits for running
//! tasks, and tasks are refused while it does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use manifests::Version;
use tokio_util::sync::CancellationToken;

use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::{self, Ready, EXIT_STAGED};
use crate::metrics::Telemetry;
use crate::state::StateDir;
use crate::tasks::TaskGate;
use crate::updater::{LoopEnd, WorkerSession};

/// The running version (`WORKER_AGENT_VERSION` at build time, else the package version).
pub const VERSION: &str = env!("BUILD_VERSION");

/// The version and target as bytes kept in the binary, so `worker-release sign-release` reads
/// what an artifact is without running it: `\0worker-agent-build:VERSION;TARGET\0`. The format
/// is a contract with release-cli/src/offline/artifact.rs.
const BUILD_MARKER: &[u8] = concat!(
    "\0worker-agent-build:",
    env!("BUILD_VERSION"),
    ";",
    env!("BUILD_TARGET"),
    "\0"
)
.as_bytes();

/// [`BUILD_MARKER`] as a static the linker keeps even though nothing reads it.
#[used]
static KEPT_BUILD_MARKER: [u8; BUILD_MARKER.len()] = {
    let mut bytes = [0u8; BUILD_MARKER.len()];
    let mut i = 0;
    while i < BUILD_MARKER.len() {
        bytes[i] = BUILD_MARKER[i];
        i += 1;
    }
    bytes
};

/// Runs the worker until shutdown (exit 0) or a staged update ([`EXIT_STAGED`]). Below the
/// channel's signed minimum version it keeps running and updating (see [`crate::minimum`]).
pub async fn run_child(config: AgentConfig) -> i32 {
    // A read the linker cannot see through, so it never drops the marker from the binary.
    std::hint::black_box(&KEPT_BUILD_MARKER);
    match run(config).await {
        Ok(code) => code,
        Err(message) => {
            tracing::error!(error = %message, "worker failed to start");
            eprintln!("worker-agent: error: {message}");
            1
        }
    }
}

async fn run(config: AgentConfig) -> Result<i32, String> {
    let version: Version = VERSION
        .parse()
        .map_err(|e| format!("own version {VERSION:?}: {e}"))?;
    let state = StateDir::open(&config.state_dir).map_err(|e| e.to_string())?;
    let worker_id = state.worker_id().map_err(|e| e.to_string())?;
    let telemetry = Arc::new(Telemetry::new(state.clone(), VERSION));
    let install_path = crate::supervisor::resolve_install_path(&config)
        .map_err(|e| format!("cannot resolve the install path: {e}"))?;
    let gate = TaskGate::new();
    let shutdown = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} for /metrics: {e}",
                config.metrics_listen
            )
        })?;
    let metrics_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = Router::new()
        .route(
            "/metrics",
            get({
                let telemetry = telemetry.clone();
                move || async move { telemetry.render() }
            }),
        )
        .route(
            "/healthz",
            get({
                let worker_id = worker_id.clone();
                let gate = gate.clone();
                move || async move {
                    axum::Json(serde_json::json!({
                        "status": "ok", "version": VERSION, "worker_id": worker_id,
                        "running_tasks": gate.running(), "draining": gate.draining(),
                    }))
                }
            }),
        );
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
        }
    });
    tokio::spawn(watch_parent_and_signals(shutdown.clone()));

    let session = WorkerSession {
        state: state.clone(),
        client: UpdateClient::new(&config).map_err(|e| e.to_string())?,
        telemetry: telemetry.clone(),
        worker_id: worker_id.clone(),
        version,
        platform: manifests::BUILD_PLATFORM.to_owned(),
    };
    // An oversized handshake is a verdict on what the server sent: counted (once) like a
    // refused document. Transport trouble is only logged while registration retries.
    let oversized_counted = Arc::new(AtomicBool::new(false));
    let count_oversized = {
        let telemetry = telemetry.clone();
        move |failure: &UpdateFailure| {
            if failure.reason == FailureReason::TooLarge
                && !oversized_counted.swap(true, Ordering::Relaxed)
            {
                telemetry.failure(&failure.reason.label());
            }
        }
    };
    // An unreachable update server does not hold the ESUP layer back: after a short wait the
    // worker goes on with its cached handshake and registers in the background.
    let Some(handshake) =
        crate::handshake::register_or_cached(&session, &config.channel, &shutdown, count_oversized)
            .await
    else {
        return Ok(0);
    };
    if handshake.below_minimum {
        // Unsigned: anyone on the path can write it. Only a verified channel statement's
        // signed minimum is acted on, by the update loop (`crate::minimum`).
        tracing::info!(minimum = %handshake.minimum_version, version = VERSION, "the update server says this version is below the channel's minimum; acting on it only once a signed channel statement says so");
    }
    // The runner instances bind their ports before the worker calls itself ready: a new
    // version in probation must prove it can serve the Manager. (Registration with the Manager
    // is not part of readiness: a Manager outage must not roll an update back.)
    let esup = esup_runner::start(
        &config.runner,
        esup_runner::StartArgs {
            gate: gate.clone(),
            metrics: telemetry.tasks.clone(),
            version: VERSION.to_owned(),
        },
    )
    .await
    .map_err(|e| format!("ESUP runner layer: {e}"))?;
    // In probation the new version proves it can do the job, not just stay alive.
    let self_check_failed = match &esup {
        Some(layer) if handover::in_probation() => probation_self_check(layer).await,
        _ => None,
    };
    state
        .write_ready(&Ready {
            pid: std::process::id(),
            version: VERSION.to_owned(),
            metrics: metrics_addr.to_string(),
            self_check_failed: self_check_failed.clone(),
        })
        .map_err(|e| e.to_string())?;
    if let Some(detail) = self_check_failed {
        return Err(format!("probation self-check failed: {detail}"));
    }
    tracing::info!(version = VERSION, %worker_id, metrics = %metrics_addr, channel = %config.channel, auto_update = config.auto_update(), "worker ready");

    let reporting = session.start_reporting(shutdown.clone()).await;
    let updater = session
        .updater(&config, gate.clone(), install_path, &handshake)
        .map_err(|e| e.to_string())?;
    let end = if session
        .wait_for_commit(handover::in_probation(), &shutdown)
        .await
    {
        updater.run(shutdown.clone()).await
    } else {
        LoopEnd::Shutdown
    };
    if let Some(layer) = esup {
        match end {
            // The updater drained the task layer and waited for it to be idle.
            LoopEnd::Staged => layer.close(),
            LoopEnd::Shutdown => layer.shutdown().await,
        }
    }
    session.finish(reporting).await;
    Ok(match end {
        LoopEnd::Staged => EXIT_STAGED,
        LoopEnd::Shutdown => 0,
    })
}

/// Runs the runner layer's self-check (`/runner/health` of every instance, a one-second
/// synthetic encode); why it failed, or `None` when it passed.
async fn probation_self_check(layer: &esup_runner::EsupLayer) -> Option<String> {
    match layer.self_check().await {
        Ok(report) => {
            let encode_ms = report
                .encode
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            tracing::info!(
                instances = report.instances,
                encode_ms,
                "probation self-check passed"
            );
            None
        }
        Err(error) => {
            tracing::error!(%error, "probation self-check failed");
            Some(error.to_string())
        }
    }
}

/// Cancels on SIGTERM/SIGINT, and when the supervisor dies (the parent changes): a worker never
/// outlives its supervisor, so a restarted supervisor never finds its ports taken.
async fn watch_parent_and_signals(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("supervisor gone; stopping");
                    break;
                }
            }
        }
    }
    shutdown.cancel();
}
