//! The ESUP runner layer: the protocol of EsupPortail's Python runner 1.7 (the ESUP runner
//! protocol summary), so an unchanged ESUP Manager registers this agent, dispatches tasks to it
//! and fetches their results.
//!
//! Its interface to the agent that embeds it is narrow: a [`gate::TaskGate`] (running tasks,
//! and whether new ones are accepted), a [`metrics::TaskMetrics`] handle registered in the
//! agent's metrics registry, and the agent's version string ([`StartArgs`]). It knows nothing
//! else of the agent.
//!
//! - [`layer`]: start (bind every instance, register, heartbeat, cleanup) and shutdown.
//! - [`config`]: `RUNNER_*`, `MANAGER_URL`, `STORAGE_DIR`, ... and grouped `RUNNER_TASK_TYPES`.
//! - [`task_type`]: the task types, listed once; [`status`]: a task's status.
//! - [`api`]: the HTTP routes of one runner instance (`/runner/*`, `/task/*`).
//! - [`manager`]: register, heartbeat, reconnect, completion callbacks with retries.
//! - [`registry`]: the tasks of one instance (one at a time), their status, stop, results.
//! - [`disk`]: `MIN_FREE_DISK_GB` and `MAX_TASK_DISK_GB`.
//! - [`source`]: downloads of `source_url`; [`egress`]: which addresses sources and completion
//!   callbacks may reach; [`process`]: tools in their own process group; [`sandbox`]: tools
//!   confined with Landlock to writing their task's workspace.
//! - [`pipeline`]: what a pipeline gets; [`error`]: why a task failed.
//! - [`encoding`], [`studio`], [`transcription`]: the pipelines, with the real tools; [`media`]:
//!   what they share (probing, the ffmpeg progress clock).
//! - [`self_check`]: proof the layer can do its job (`/runner/health` of every instance, a
//!   one-second synthetic encode), run by the agent on a new version in probation.
//! - [`local`]: `worker-agent task run`, one task on local files without a Manager.
//! - [`paths`]: task ids, output names, the result manifest; [`cleanup`]: removal of old task
//!   directories; [`fs`]: durable writes; [`tasklock`]: one lock per task id across instances.
//! - [`gate`], [`metrics`]: the interface to the embedding agent.

pub mod api;
pub mod cleanup;
pub mod config;
pub mod disk;
pub mod egress;
pub mod encoding;
pub mod error;
pub mod fs;
pub mod gate;
pub mod layer;
pub mod local;
pub mod manager;
pub mod media;
pub mod metrics;
pub mod paths;
pub mod pipeline;
pub mod process;
pub mod registry;
pub mod sandbox;
pub mod self_check;
pub mod source;
pub mod status;
pub mod studio;
pub mod task_type;
pub mod tasklock;
pub mod transcription;

pub use layer::{start, EsupLayer, StartArgs};
pub use task_type::TaskType;
