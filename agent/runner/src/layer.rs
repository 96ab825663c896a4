//! The running layer: binds every instance, keeps it registered with the Manager, removes old
//! task directories, and drains on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, RunnerConfig};
use crate::gate::TaskGate;
use crate::manager::{CompletionSender, ManagerClient, Registration};
use crate::metrics::TaskMetrics;
use crate::registry::{Instance, Runner};
use crate::sandbox::ToolSandbox;
use crate::{api, cleanup};

/// What the embedding agent hands the layer besides its configuration.
#[derive(Debug, Clone)]
pub struct StartArgs {
    /// Running tasks and the switch that stops the layer accepting new ones; the agent keeps a
    /// clone to decide when that happens.
    pub gate: TaskGate,
    /// The task metrics, registered in the agent's metrics registry.
    pub metrics: TaskMetrics,
    /// The agent's version, shown as `agent_version` by `/` and `/runner/status` and as
    /// `runner_version` in `task_metadata.json`.
    pub version: String,
}

/// The running ESUP layer: its instances (bound and serving) and their background loops.
#[derive(Debug)]
pub struct EsupLayer {
    /// Shared state (the configuration the self-check reads).
    pub(crate) runner: Arc<Runner>,
    /// The instances, in `runner_instance_id` order.
    pub instances: Vec<Arc<Instance>>,
    /// Stops the HTTP servers (after the drain).
    servers: CancellationToken,
    /// Stops registration, heartbeats and cleanup.
    loops: CancellationToken,
}

/// Starts the runner layer when `MANAGER_URL` is set: checks the configuration, binds every
/// instance's port (so a new version in probation proves it can serve), then registers and
/// heartbeats in the background. `Ok(None)` when no Manager is configured.
pub async fn start(
    config: &RunnerConfig,
    args: StartArgs,
) -> Result<Option<EsupLayer>, ConfigError> {
    let Some(manager_base) = config.manager_base() else {
        tracing::info!("MANAGER_URL is not set: the ESUP runner layer is off (updates only)");
        return Ok(None);
    };
    config.validate()?;
    let token = config.checked_token()?;
    std::fs::create_dir_all(&config.storage_dir).map_err(|e| {
        ConfigError(format!(
            "STORAGE_DIR {}: cannot create it: {e}",
            config.storage_dir.display()
        ))
    })?;
    let manager = ManagerClient::new(&manager_base, &token, &config.runner_protocol_version)
        .map_err(|e| ConfigError(format!("Manager client: {e}")))?
        .with_callback_origins(config.callback_origins()?);
    let fetcher = config
        .limits
        .source_fetcher()
        .map_err(|e| ConfigError(format!("download client: {e}")))?;
    let completions = CompletionSender::new(
        manager.clone(),
        config.completion_retries,
        Duration::from_secs_f64(config.completion_retry_base_secs.max(0.0)),
    );
    // Tools run confined by the agent's own binary (`tool-sandbox`); the kernel's Landlock
    // support (or the fallback) is logged once.
    let sandbox = ToolSandbox::current_exe();
    sandbox.log_support().await;
    let runner = Arc::new(Runner {
        config: config.clone(),
        token,
        gate: args.gate,
        metrics: args.metrics,
        version: args.version,
        media: Arc::new(config.media.media_config()),
        fetcher,
        manager,
        completions,
        shutting_down: std::sync::atomic::AtomicBool::new(false),
        sandbox: Some(sandbox),
    });
    let servers = CancellationToken::new();
    let loops = CancellationToken::new();
    let mut instances = Vec::new();
    for plan in config.instances()? {
        let instance = Arc::new(Instance::new(
            runner.clone(),
            plan.index,
            plan.port,
            plan.task_types,
        ));
        let address = format!("{}:{}", config.runner_listen_host, plan.port);
        let listener = tokio::net::TcpListener::bind(&address).await.map_err(|e| {
            ConfigError(format!(
                "runner instance {}: cannot listen on {address}: {e}",
                plan.index
            ))
        })?;
        tracing::info!(runner_id = %instance.runner_id, %address, task_types = %instance.task_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","), "runner instance listening");
        tokio::spawn(serve(
            listener,
            api::router(instance.clone()),
            config.runner_max_connections,
            Duration::from_secs(config.runner_header_read_timeout_secs),
            servers.clone(),
        ));
        tokio::spawn(keep_registered(instance.clone(), loops.clone()));
        instances.push(instance);
    }
    runner.completions.resume(&config.storage_dir);
    tokio::spawn(cleanup_loop(
        runner.clone(),
        instances.clone(),
        loops.clone(),
    ));
    Ok(Some(EsupLayer {
        runner,
        instances,
        servers,
        loops,
    }))
}

impl EsupLayer {
    /// Shutdown: refuse new tasks, let running ones finish for up to `RUNNER_DRAIN_TIMEOUT_SECS`,
    /// stop what still runs, then close the ports.
    pub async fn shutdown(self) {
        let gate = &self.runner.gate;
        gate.drain();
        let drain = Duration::from_secs(self.runner.config.runner_drain_timeout_secs);
        if !gate.wait_idle(drain).await {
            tracing::warn!(
                running = gate.running(),
                "tasks still running after the drain timeout; stopping them"
            );
            self.runner.shutting_down.store(true, Ordering::SeqCst);
            for instance in &self.instances {
                instance.stop_all();
            }
            let _ = gate.wait_idle(Duration::from_secs(15)).await;
        }
        self.loops.cancel();
        self.servers.cancel();
    }

    /// Stop serving at once: the caller has stopped the gate accepting tasks and waited until
    /// none runs (so another process, e.g. a new version, can bind the same ports).
    pub fn close(self) {
        self.loops.cancel();
        self.servers.cancel();
    }
}

/// Serves one instance's port with `RUNNER_MAX_CONNECTIONS` and `RUNNER_HEADER_READ_TIMEOUT_SECS`
/// (the update server's limits, from `serve-limits`), until `stop`; then closes the listener at
/// once (a new version may bind the port) and lets open connections finish.
async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    max_connections: usize,
    timeout: Duration,
    stop: CancellationToken,
) {
    let service = serve_limits::ConnectionLimit::new(app, max_connections);
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            stop.cancelled().await;
            handle.graceful_shutdown(Some(timeout));
        }
    });
    let server = match listener.into_std().and_then(axum_server::from_tcp) {
        Ok(server) => server.handle(handle),
        Err(error) => {
            tracing::error!(%error, "runner instance: cannot serve its listener");
            return;
        }
    };
    if let Err(error) = serve_limits::with_timeouts(server, timeout, timeout)
        .serve(service)
        .await
    {
        tracing::error!(%error, "runner instance: serving failed");
    }
}

/// Registers, heartbeats, and after any failed heartbeat, reconnects: every period check the
/// Manager's health, then register again with a backoff of period * 2^n, capped at 20 periods
/// (15 s, 30 s, ... 300 s with the default period).
async fn keep_registered(instance: Arc<Instance>, stop: CancellationToken) {
    let runner = instance.runner.clone();
    let period = Duration::from_secs(runner.config.runner_heartbeat_secs);
    let registration = || Registration {
        id: instance.runner_id.clone(),
        url: instance.url.clone(),
        task_types: instance
            .task_types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
        availability: if instance.available() {
            "available"
        } else {
            "busy"
        }
        .to_owned(),
    };
    let sleep = |duration: Duration| {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep(duration) => true,
                () = stop.cancelled() => false,
            }
        }
    };
    let mut failures: u32 = 0;
    loop {
        if !instance.is_registered() {
            if failures > 0 {
                // Wait for the Manager to be healthy again before registering.
                loop {
                    if !sleep(period).await {
                        return;
                    }
                    match runner.manager.healthy().await {
                        Ok(()) => break,
                        Err(error) => tracing::debug!(%error, "Manager not healthy yet"),
                    }
                }
            }
            match runner.manager.register(&registration()).await {
                Ok(()) => {
                    instance.set_registered(true);
                    failures = 0;
                    tracing::info!(runner_id = %instance.runner_id, url = %instance.url, "registered with the Manager");
                }
                Err(error) => {
                    let backoff = period
                        .saturating_mul(2_u32.saturating_pow(failures.min(16)))
                        .min(period.saturating_mul(20));
                    failures = failures.saturating_add(1);
                    tracing::warn!(runner_id = %instance.runner_id, %error, retry_in_s = backoff.as_secs(), "registration with the Manager failed");
                    if !sleep(backoff).await {
                        return;
                    }
                    continue;
                }
            }
        }
        if !sleep(period).await {
            return;
        }
        let availability = if instance.available() {
            "available"
        } else {
            "busy"
        };
        if let Err(error) = runner
            .manager
            .heartbeat(&instance.runner_id, availability)
            .await
        {
            tracing::warn!(runner_id = %instance.runner_id, %error, "heartbeat failed; reconnecting");
            instance.set_registered(false);
            failures = 1;
        }
    }
}

async fn cleanup_loop(runner: Arc<Runner>, instances: Vec<Arc<Instance>>, stop: CancellationToken) {
    let max_age = Duration::from_secs(runner.config.max_file_age_days.saturating_mul(86_400));
    let interval = Duration::from_secs(
        runner
            .config
            .cleanup_interval_hours
            .max(1)
            .saturating_mul(3600),
    );
    loop {
        let storage = runner.config.storage_dir.clone();
        let running: Vec<String> = instances.iter().filter_map(|i| i.current_task()).collect();
        let removed = tokio::task::spawn_blocking(move || {
            cleanup::remove_old_tasks(&storage, max_age, |id| running.iter().any(|r| r == id))
        })
        .await
        .unwrap_or_default();
        if removed > 0 {
            tracing::info!(removed, "cleanup removed old task directories");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
    }
}
