//! The runner instances of this process and their tasks: one task at a time per instance, its
//! status (kept in memory and in `STORAGE_DIR/<id>/status.json`, so a restarted agent still
//! answers for it), stop, results, and the completion call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RunnerConfig;
use crate::error::TaskError;
use crate::fs::write_atomic;
use crate::gate::{TaskGate, TaskGuard};
use crate::manager::{Completion, CompletionSender, ManagerClient};
use crate::metrics::TaskMetrics;
use crate::paths::{self, ResultManifest};
use crate::pipeline::{MediaConfig, Parameters, Progress, TaskContext};
use crate::process::{self, ProcessRunner};
use crate::source::{SourceFetcher, SourceKind};
use crate::status::TaskStatus;
use crate::task_type::TaskType;
use crate::tasklock::{self, LockError, TaskLock};
use crate::{disk, encoding, studio, transcription};

/// What every instance of this process shares.
#[derive(Debug)]
pub struct Runner {
    /// The configuration.
    pub config: RunnerConfig,
    /// The shared token.
    pub token: String,
    /// Running tasks and whether new ones are accepted.
    pub gate: TaskGate,
    /// The task metrics.
    pub metrics: TaskMetrics,
    /// The agent's version (`runner_version` in `task_metadata.json`, `agent_version` in the API).
    pub version: String,
    /// Media tools.
    pub media: Arc<MediaConfig>,
    /// Source downloads.
    pub fetcher: SourceFetcher,
    /// The Manager.
    pub manager: ManagerClient,
    /// Completion delivery.
    pub completions: CompletionSender,
    /// Set when the agent shuts down: tasks stopped then fail with a shutdown message.
    pub shutting_down: AtomicBool,
    /// Confines the tools of every task (`crate::sandbox`).
    pub sandbox: Option<crate::sandbox::ToolSandbox>,
}

/// What `/task/status` shows, and `status.json` keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskView {
    /// The task.
    pub task_id: String,
    /// `running`, `completed`, `failed`, `timeout`.
    pub status: TaskStatus,
    /// Why it failed.
    pub error_message: Option<String>,
    /// What the pipeline said.
    pub script_output: String,
    /// Its type.
    pub task_type: String,
    /// Progress in percent.
    pub progress: f64,
    /// The runner instance it ran on.
    pub runner_id: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

#[derive(Debug)]
struct TaskRecord {
    view: TaskView,
    progress: Progress,
    process: ProcessRunner,
}

#[derive(Debug, Default)]
struct InstanceState {
    current: Option<String>,
    tasks: HashMap<String, TaskRecord>,
}

/// The body of `POST /task/run`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RunRequest {
    /// `^[A-Za-z0-9_-]+$`.
    pub task_id: String,
    /// The establishment (informational).
    #[serde(default)]
    pub etab_name: Option<String>,
    /// The calling application (informational).
    #[serde(default)]
    pub app_name: Option<String>,
    /// Its version (informational).
    #[serde(default)]
    pub app_version: Option<String>,
    /// `encoding`, `studio` or `transcription`.
    pub task_type: String,
    /// What to process.
    pub source_url: String,
    /// Informational.
    #[serde(default)]
    pub affiliation: Option<String>,
    /// Per-type parameters.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    /// Informational.
    #[serde(default)]
    pub notify_url: Option<String>,
    /// Where to `POST` the completion.
    #[serde(default)]
    pub completion_callback: Option<String>,
}

/// Why `/task/run` refused a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// 503: not registered with the Manager.
    #[error("Runner not registered with the manager")]
    NotRegistered,
    /// 400: a task runs, or the agent drains for an update.
    #[error("Runner is busy")]
    Busy,
    /// 422: the request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// 409: the task id runs on another instance sharing `STORAGE_DIR`.
    #[error("{0}")]
    Conflict(String),
    /// 507: `STORAGE_DIR` has less free space than `MIN_FREE_DISK_GB`.
    #[error("{0}")]
    NoSpace(String),
}

/// What `/task/stop` did. (The Python runner answers 409 while a task has no process yet; here
/// a stop during the download cancels the download, so there is always something to stop.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// 202: signalled.
    Requested {
        /// Whether any process group got the signal.
        terminated_any_process: bool,
    },
    /// 200: already finished.
    AlreadyTerminal(TaskStatus),
    /// 404.
    Unknown,
}

/// One runner instance (one port, one runner id, one task at a time).
#[derive(Debug)]
pub struct Instance {
    /// Shared state.
    pub runner: Arc<Runner>,
    /// `runner_instance_id`.
    pub index: usize,
    /// Its port.
    pub port: u16,
    /// `{base}-{host}-{port}`.
    pub runner_id: String,
    /// The URL it registers.
    pub url: String,
    /// The types it runs.
    pub task_types: Vec<TaskType>,
    /// Registered with the Manager (heartbeats succeed).
    pub registered: AtomicBool,
    state: Mutex<InstanceState>,
}

impl Instance {
    /// A new, unregistered instance.
    pub fn new(runner: Arc<Runner>, index: usize, port: u16, task_types: Vec<TaskType>) -> Self {
        let runner_id = runner.config.runner_id(port);
        let url = runner.config.runner_url(port);
        runner
            .metrics
            .task_progress
            .with_label_values(&[&runner_id])
            .set(0.0);
        runner
            .metrics
            .runner_registered
            .with_label_values(&[&runner_id])
            .set(0);
        Instance {
            runner,
            index,
            port,
            runner_id,
            url,
            task_types,
            registered: AtomicBool::new(false),
            state: Mutex::new(InstanceState::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, InstanceState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the instance is registered.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    /// Marks the instance (un)registered.
    pub fn set_registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::SeqCst);
        self.runner
            .metrics
            .runner_registered
            .with_label_values(&[&self.runner_id])
            .set(i64::from(registered));
    }

    /// Whether it would accept a task now (no task, not draining).
    pub fn available(&self) -> bool {
        self.state().current.is_none() && !self.runner.gate.draining()
    }

    /// The running task, if any.
    pub fn current_task(&self) -> Option<String> {
        self.state().current.clone()
    }

    /// `STORAGE_DIR/<id>`.
    pub fn workspace(&self, task_id: &str) -> PathBuf {
        self.runner.config.storage_dir.join(task_id)
    }

    /// Validates and starts a task.
    pub fn start(self: &Arc<Self>, request: RunRequest) -> Result<(), StartError> {
        if !paths::valid_task_id(&request.task_id) {
            return Err(StartError::Invalid(format!(
                "Invalid task_id {:?}: expected ^[A-Za-z0-9_-]+$",
                request.task_id
            )));
        }
        if !self.is_registered() {
            return Err(StartError::NotRegistered);
        }
        let task_type = TaskType::parse(&request.task_type)
            .filter(|t| self.task_types.contains(t))
            .ok_or_else(|| {
                StartError::Invalid(format!(
                    "Task type {:?} is not supported by this runner (supported: {})",
                    request.task_type,
                    self.task_types
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let parameters = request.parameters.clone().unwrap_or_default();
        let allowed = task_type.allowed_parameters();
        let mut invalid: Vec<&str> = parameters
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        if !invalid.is_empty() {
            invalid.sort_unstable();
            return Err(StartError::Invalid(format!(
                "Invalid parameters for task type: {task_type} (invalid fields: {})",
                invalid.join(", ")
            )));
        }
        if request.source_url.trim().is_empty() {
            return Err(StartError::Invalid("source_url is empty".to_owned()));
        }
        if let Some(callback) = request
            .completion_callback
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            if let Err(message) = self.runner.manager.check_callback(callback) {
                self.runner.metrics.refused(&message);
                tracing::warn!(task_id = %request.task_id, %callback, reason = "callback_origin", "task refused: completion callback not at the Manager's origin");
                return Err(StartError::Invalid(message));
            }
        }
        let mut state = self.state();
        if state.current.is_some() {
            return Err(StartError::Busy);
        }
        if state
            .tasks
            .get(&request.task_id)
            .is_some_and(|t| t.view.status == TaskStatus::Running)
        {
            return Err(StartError::Busy);
        }
        let limits = &self.runner.config.limits;
        if let Err(message) = disk::check_free(
            &self.runner.config.storage_dir,
            disk::gb_to_bytes(limits.min_free_disk_gb),
        ) {
            self.runner.metrics.refused(&message);
            tracing::warn!(task_id = %request.task_id, reason = "disk_full", %message, "task refused");
            return Err(StartError::NoSpace(message));
        }
        let lock = match tasklock::try_lock(&self.runner.config.storage_dir, &request.task_id) {
            Ok(lock) => lock,
            Err(error @ LockError::Held(_)) => {
                self.runner.metrics.refused(&error.to_string());
                tracing::warn!(task_id = %request.task_id, reason = "task_locked", "task refused: its id runs on another instance");
                return Err(StartError::Conflict(error.to_string()));
            }
            Err(error) => return Err(StartError::Invalid(error.to_string())),
        };
        let guard = self.runner.gate.try_start().ok_or(StartError::Busy)?;
        let cancel = CancellationToken::new();
        let workspace = self.workspace(&request.task_id);
        let process = ProcessRunner::new(
            &workspace,
            self.runner.config.limits.script_timeout(),
            cancel,
        );
        if let Some(sandbox) = &self.runner.sandbox {
            process.confine(sandbox.clone());
        }
        let progress = Progress::default();
        let view = TaskView {
            task_id: request.task_id.clone(),
            status: TaskStatus::Running,
            error_message: None,
            script_output: String::new(),
            task_type: task_type.as_str().to_owned(),
            progress: 0.0,
            runner_id: self.runner_id.clone(),
            started_at: now_rfc3339(),
            finished_at: None,
        };
        state.current = Some(request.task_id.clone());
        state.tasks.insert(
            request.task_id.clone(),
            TaskRecord {
                view,
                progress: progress.clone(),
                process: process.clone(),
            },
        );
        drop(state);
        let instance = self.clone();
        let span = tracing::info_span!("task", task_id = %request.task_id, task_type = %task_type, runner_id = %self.runner_id);
        tokio::spawn(
            instance
                .execute(
                    request,
                    task_type,
                    Parameters(parameters),
                    process,
                    progress,
                    (guard, lock),
                )
                .instrument(span),
        );
        Ok(())
    }

    async fn execute(
        self: Arc<Self>,
        request: RunRequest,
        task_type: TaskType,
        parameters: Parameters,
        process: ProcessRunner,
        progress: Progress,
        (guard, lock): (TaskGuard, TaskLock),
    ) {
        let started = Instant::now();
        let metrics = &self.runner.metrics;
        metrics
            .tasks_running
            .with_label_values(&[task_type.as_str()])
            .inc();
        tracing::info!(source_url = %request.source_url, "task started");
        let ticker = tokio::spawn({
            let (metrics, runner_id, progress) =
                (metrics.clone(), self.runner_id.clone(), progress.clone());
            async move {
                loop {
                    metrics
                        .task_progress
                        .with_label_values(&[&runner_id])
                        .set(progress.get());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
        let workspace = self.workspace(&request.task_id);
        let max_disk = disk::gb_to_bytes(self.runner.config.limits.max_task_disk_gb);
        let outcome = self
            .run_pipeline(&request, task_type, parameters, &process, &progress)
            .await;
        ticker.abort();
        let output_dir = workspace.join("output");
        // Over the bound (whether the watcher caught it while running or not): fail, clean up.
        let outcome = match disk::check_used(&workspace, max_disk) {
            Err(over) => Err(over),
            Ok(()) => outcome,
        };
        let outcome = match outcome {
            Ok(summary) => {
                write_manifest(&request.task_id, &workspace, &output_dir).map(|()| summary)
            }
            Err(error) => Err(error),
        };
        if let Err(TaskError::BadInput(message)) = &outcome {
            // Source refusals and the disk bound: counted by reason.
            self.runner.metrics.refused(message);
            if message.contains("reason: task_disk_limit") {
                disk::remove_written(&workspace);
            }
        }
        let (status, error_message, script_output) = match outcome {
            Ok(summary) => (TaskStatus::Completed, None, summary),
            Err(TaskError::Timeout(secs)) => (
                TaskStatus::Timeout,
                Some(TaskError::Timeout(secs).to_string()),
                String::new(),
            ),
            Err(TaskError::Cancelled) if self.runner.shutting_down.load(Ordering::SeqCst) => (
                TaskStatus::Failed,
                Some("Runner shut down before the task finished.".to_owned()),
                String::new(),
            ),
            Err(error) => (TaskStatus::Failed, Some(error.to_string()), String::new()),
        };
        let elapsed = started.elapsed();
        match status {
            TaskStatus::Completed => {
                tracing::info!(elapsed_s = elapsed.as_secs_f64(), "task completed")
            }
            _ => tracing::warn!(
                status = status.as_str(),
                error = error_message.as_deref().unwrap_or_default(),
                elapsed_s = elapsed.as_secs_f64(),
                "task did not complete"
            ),
        }
        let view = {
            let mut state = self.state();
            let view = state.tasks.get_mut(&request.task_id).map(|record| {
                record.view.status = status;
                record.view.error_message.clone_from(&error_message);
                record.view.script_output.clone_from(&script_output);
                record.view.progress = if status == TaskStatus::Completed {
                    100.0
                } else {
                    progress.get()
                };
                record.view.finished_at = Some(now_rfc3339());
                record.view.clone()
            });
            view
        };
        if let Some(view) = &view {
            if workspace.is_dir() {
                let bytes = serde_json::to_vec_pretty(view).unwrap_or_default();
                if let Err(error) = write_atomic(&workspace.join("status.json"), &bytes) {
                    tracing::warn!(%error, "could not record the task status");
                }
            }
        }
        metrics
            .tasks_running
            .with_label_values(&[task_type.as_str()])
            .dec();
        metrics
            .tasks_finished
            .with_label_values(&[task_type.as_str(), status.as_str()])
            .inc();
        metrics
            .task_durations
            .with_label_values(&[task_type.as_str()])
            .observe(elapsed.as_secs_f64());
        metrics
            .task_progress
            .with_label_values(&[&self.runner_id])
            .set(0.0);
        self.state().current = None;
        drop(guard);
        if workspace.is_dir() {
            self.runner.completions.send(
                &workspace,
                request.completion_callback.clone().unwrap_or_default(),
                Completion {
                    task_id: request.task_id.clone(),
                    status: status.as_str().to_owned(),
                    error_message,
                    script_output,
                },
            );
        }
        // Only now may another instance reuse the id: status and pending completion are written.
        drop(lock);
    }

    async fn run_pipeline(
        &self,
        request: &RunRequest,
        task_type: TaskType,
        parameters: Parameters,
        process: &ProcessRunner,
        progress: &Progress,
    ) -> Result<String, TaskError> {
        let workspace = self.workspace(&request.task_id);
        // A task id run again starts from a clean workspace.
        if workspace.exists() {
            std::fs::remove_dir_all(&workspace)
                .map_err(|e| TaskError::io("removing the previous workspace", &workspace, &e))?;
        }
        let output_dir = workspace.join("output");
        std::fs::create_dir_all(&output_dir)
            .map_err(|e| TaskError::io("creating", &output_dir, &e))?;
        let max_disk = disk::gb_to_bytes(self.runner.config.limits.max_task_disk_gb);
        let watcher = disk::watch(&workspace, max_disk, process.clone());
        let result = self
            .run_in_workspace(request, task_type, parameters, process, progress)
            .await;
        watcher.abort();
        result
    }

    async fn run_in_workspace(
        &self,
        request: &RunRequest,
        task_type: TaskType,
        parameters: Parameters,
        process: &ProcessRunner,
        progress: &Progress,
    ) -> Result<String, TaskError> {
        let workspace = self.workspace(&request.task_id);
        let output_dir = workspace.join("output");
        let metadata = serde_json::json!({
            "task_id": request.task_id,
            "task_type": task_type.as_str(),
            "source_url": request.source_url,
            "etab_name": request.etab_name,
            "app_name": request.app_name,
            "app_version": request.app_version,
            "affiliation": request.affiliation,
            "parameters": parameters.0,
            "runner_id": self.runner_id,
            "runner_version": self.runner.version,
            "started_at": now_rfc3339(),
        });
        write_atomic(
            &output_dir.join("task_metadata.json"),
            &serde_json::to_vec_pretty(&metadata).unwrap_or_default(),
        )
        .map_err(|e| TaskError::Failed(e.to_string()))?;
        let kind = match task_type {
            TaskType::Studio => SourceKind::Mediapackage,
            TaskType::Encoding | TaskType::Transcription => SourceKind::Media,
        };
        let (_, name) = self.runner.fetcher.check_url(&request.source_url, kind)?;
        let extension = std::path::Path::new(&name)
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let file_name = format!("{}.{extension}", paths::output_stem(&name));
        let fetched = self
            .runner
            .fetcher
            .fetch(&request.source_url, kind, &workspace, &file_name, process)
            .await?;
        tracing::info!(bytes = fetched.bytes, file = %fetched.path.display(), "source downloaded");
        let ctx = TaskContext {
            task_id: request.task_id.clone(),
            workspace: workspace.clone(),
            output_dir,
            source: fetched.path.clone(),
            source_name: fetched.name,
            parameters,
            media: self.runner.media.clone(),
            process: process.clone(),
            progress: progress.clone(),
            fetcher: self.runner.fetcher.clone(),
        };
        let result = match task_type {
            TaskType::Encoding => encoding::run(&ctx, &fetched.path).await,
            TaskType::Studio => studio::run(&ctx).await,
            TaskType::Transcription => transcription::run(&ctx).await,
        };
        process.check().and(result)
    }

    /// `/task/status/{id}`: the tracked task, else what its workspace says.
    pub fn status(&self, task_id: &str) -> Option<TaskView> {
        if let Some(record) = self.state().tasks.get(task_id) {
            let mut view = record.view.clone();
            if view.status == TaskStatus::Running {
                view.progress = record.progress.get();
            }
            return Some(view);
        }
        let workspace = self.workspace(task_id);
        if let Some(view) = std::fs::read(workspace.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<TaskView>(&b).ok())
            .filter(|v| v.status != TaskStatus::Running && v.task_id == task_id)
        {
            return Some(view);
        }
        workspace.join("manifest.json").is_file().then(|| TaskView {
            task_id: task_id.to_owned(),
            status: TaskStatus::Completed,
            error_message: None,
            script_output: String::new(),
            task_type: String::new(),
            progress: 100.0,
            runner_id: self.runner_id.clone(),
            started_at: String::new(),
            finished_at: None,
        })
    }

    /// `/task/stop/{id}`.
    pub fn stop(&self, task_id: &str) -> StopOutcome {
        let state = self.state();
        match state.tasks.get(task_id) {
            Some(record) if record.view.status == TaskStatus::Running => {
                record.process.cancel_token().cancel();
                if !record.process.started_any() && record.process.live_groups().is_empty() {
                    // The download (or set-up) is cancelled; no process to signal.
                    return StopOutcome::Requested {
                        terminated_any_process: false,
                    };
                }
                StopOutcome::Requested {
                    terminated_any_process: process::signal_groups(&record.process),
                }
            }
            Some(record) => StopOutcome::AlreadyTerminal(record.view.status),
            None => {
                drop(state);
                match self.status(task_id) {
                    Some(view) => StopOutcome::AlreadyTerminal(view.status),
                    None => StopOutcome::Unknown,
                }
            }
        }
    }

    /// Whether `task_id` runs on this instance now.
    pub fn is_running(&self, task_id: &str) -> bool {
        self.state().current.as_deref() == Some(task_id)
    }

    /// Forgets a finished task (after `/task/delete`).
    pub fn forget(&self, task_id: &str) {
        self.state().tasks.remove(task_id);
    }

    /// Stops every running task (shutdown past the drain timeout).
    pub fn stop_all(&self) {
        let state = self.state();
        for record in state.tasks.values() {
            if record.view.status == TaskStatus::Running {
                record.process.cancel_token().cancel();
            }
        }
    }
}

fn write_manifest(
    task_id: &str,
    workspace: &std::path::Path,
    output_dir: &std::path::Path,
) -> Result<(), TaskError> {
    let files = paths::list_outputs(output_dir)
        .map_err(|e| TaskError::io("listing outputs in", output_dir, &e))?;
    let manifest = ResultManifest {
        task_id: task_id.to_owned(),
        files,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_atomic(&workspace.join("manifest.json"), &bytes)
        .map_err(|e| TaskError::Failed(format!("writing manifest.json: {e}")))
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
