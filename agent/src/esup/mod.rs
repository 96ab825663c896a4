//! The ESUP runner layer: the protocol of EsupPortail's Python runner 1.7 (see
//! `shared/esup-runner-protocol.md`), so an unchanged ESUP Manager registers this agent,
//! dispatches tasks to it and fetches their results.
//!
//! - [`config`]: `RUNNER_*`, `MANAGER_URL`, `STORAGE_DIR`, ... and grouped `RUNNER_TASK_TYPES`.
//! - [`api`]: the HTTP routes of one runner instance (`/runner/*`, `/task/*`).
//! - [`manager`]: register, heartbeat, reconnect, completion callbacks with retries.
//! - [`registry`]: the tasks of one instance (one at a time), their status, stop, results.
//! - [`source`]: downloads of `source_url`; [`process`]: tools in their own process group.
//! - [`encoding`], [`studio`], [`transcription`]: the pipelines, with the real tools.
//! - [`cleanup`]: removal of old task directories.

pub mod api;
pub mod cleanup;
pub mod config;
pub mod encoding;
pub mod local;
pub mod manager;
pub mod media;
pub mod paths;
pub mod pipeline;
pub mod process;
pub mod registry;
pub mod source;
pub mod studio;
pub mod transcription;

use std::fmt;

/// The task types of ESUP runner 1.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    /// Video/audio encoding: HLS + MP4 ladder, audio, thumbnails, overview.
    Encoding,
    /// Opencast studio recording: composite of presenter and presentation, then encoding.
    Studio,
    /// Whisper transcription to WebVTT (and SRT).
    Transcription,
}

impl TaskType {
    /// All task types.
    pub const ALL: [TaskType; 3] = [
        TaskType::Encoding,
        TaskType::Studio,
        TaskType::Transcription,
    ];

    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Encoding => "encoding",
            TaskType::Studio => "studio",
            TaskType::Transcription => "transcription",
        }
    }

    /// Parses a protocol name.
    pub fn parse(name: &str) -> Option<TaskType> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == name.trim().to_ascii_lowercase())
    }

    /// Parameter keys a task of this type accepts; any other key is refused with 422.
    /// Studio takes its own keys plus every encoding key (it ends with an encoding).
    pub fn allowed_parameters(self) -> Vec<&'static str> {
        const ENCODING: &[&str] = &[
            "rendition",
            "cut",
            "dressing",
            "video_id",
            "video_slug",
            "video_title",
        ];
        const STUDIO_OWN: &[&str] = &[
            "presenter",
            "force_cpu",
            "studio_crf",
            "studio_preset",
            "studio_audio_bitrate",
        ];
        const TRANSCRIPTION: &[&str] = &[
            "language",
            "source_language",
            "model",
            "normalize",
            "format",
            "model_type",
            "duration",
            "video_id",
            "video_slug",
            "video_title",
        ];
        match self {
            TaskType::Encoding => ENCODING.to_vec(),
            TaskType::Studio => [STUDIO_OWN, ENCODING].concat(),
            TaskType::Transcription => TRANSCRIPTION.to_vec(),
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::Telemetry;
use crate::tasks::TaskGate;
use config::{ConfigError, RunnerConfig};
use manager::{CompletionSender, ManagerClient, Registration};
use registry::{Instance, Runner};
use source::SourceFetcher;

/// The running ESUP layer: its instances (bound and serving) and their background loops.
#[derive(Debug)]
pub struct EsupLayer {
    runner: Arc<Runner>,
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
    gate: TaskGate,
    telemetry: Arc<Telemetry>,
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
        .map_err(|e| ConfigError(format!("Manager client: {e}")))?;
    let fetcher = SourceFetcher::new(config.limits.source_limits())
        .map_err(|e| ConfigError(format!("download client: {e}")))?;
    let completions = CompletionSender::new(
        manager.clone(),
        config.completion_retries,
        Duration::from_secs_f64(config.completion_retry_base_secs.max(0.0)),
    );
    let runner = Arc::new(Runner {
        config: config.clone(),
        token,
        gate,
        telemetry,
        media: Arc::new(config.media.media_config()),
        fetcher,
        manager,
        completions,
        shutting_down: std::sync::atomic::AtomicBool::new(false),
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
        tracing::info!(runner_id = %instance.runner_id, %address, task_types = ?instance.task_types, "runner instance listening");
        tokio::spawn({
            let app = api::router(instance.clone());
            let stop = servers.clone();
            async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            }
        });
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

    /// The update is staged: no task runs (the updater drained and waited); stop serving so
    /// the new version can bind the same ports.
    pub fn close(self) {
        self.loops.cancel();
        self.servers.cancel();
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
