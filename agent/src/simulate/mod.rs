//! `worker-agent simulate`: many lightweight agents in one process, against a real update
//! server, for the fleet benchmarks (`scripts/bench-fleet.sh`).
//!
//! Each simulated agent is the real worker code path, minus the processes: its own worker id
//! (`sim-<seed>-<index>`) and state directory under `--base-dir`, its own [`Telemetry`]
//! (counters persisted in its state directory), and the worker's own start-up
//! ([`WorkerSession`]: registration, the outbox flusher, the updater's construction), so the real
//! [`crate::updater::Updater`] loop (poll or long poll with the agent's jitter, root rotation,
//! [`manifests::UpdateCheck::decide`], the streamed and verified download, staging and
//! `pending.json`) and the real outbox. All agents share one HTTP client (one connection pool)
//! and one tokio runtime.
//!
//! The supervisor's part is the supervisor's own flow (`supervisor::judge`: re-verification of the staged
//! file, probation attempts, commit or rollback, outcome record, quarantine) over a simulated
//! `supervisor::Handover` host: the "new version" is started as another worker task (it registers with
//! the new version, like the new process), held in probation for `--probation-ms`, and a commit
//! renames the staged file over the agent's own install path (a file in its directory: nothing
//! is executed). A version named by `--fail-version` fails its probation (`died_in_probation`,
//! at a random moment within the probation time). Outcomes go through the outbox like the
//! supervisor's, so the server receives the agent's real reports and its auto-halt sees them.
//!
//! Output (stdout): one JSON object per line: `ready`, `stimulus`, `progress` (every
//! `--progress-ms`) and a final `summary`. Logs go to stderr (`LOG_LEVEL`).

mod agent;
mod fleet;
mod summary;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use manifests::Version;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::error::UpdateFailure;
use crate::state::StateError;

use agent::prepare_agent;
use fleet::{Fleet, Record, Sim, Slot};
use summary::{summarise, Snapshot};

/// Arguments of `worker-agent simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
    /// How many of them (the first ones) follow the `canary` channel instead of `--channel`.
    #[arg(long, default_value_t = 0)]
    pub canary: usize,
    /// Channel the other agents follow.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// Base URL of the update server, or several comma-separated (replicas): agent `i`
    /// starts with entry `i mod n` and fails over along the list, as the agent does.
    #[arg(long = "update-server", env = "UPDATE_SERVER_URL")]
    pub update_server: String,
    /// Worker token (`--token-file` keeps it off the command line).
    #[arg(long, env = "WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the worker token.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The trusted root every agent starts from.
    #[arg(long, env = "TRUSTED_ROOT")]
    pub root: PathBuf,
    /// Directory of the agents' state directories and install files (`agent-<index>/`). Put it
    /// on a tmpfs for large fleets: every state write is fsync'd, as in the agent.
    #[arg(long)]
    pub base_dir: PathBuf,
    /// Version the agents run at start (default: this build's version).
    #[arg(long)]
    pub version: Option<Version>,
    /// Worker ids are `sim-<seed>-<index>` (default: a random seed).
    #[arg(long)]
    pub seed: Option<String>,
    /// Long polls (`wait=`), as the agent's `--long-poll`; `false`: plain polls every
    /// `--poll-interval-secs` with the agent's full jitter.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub long_poll: bool,
    /// The agent's `--poll-interval-secs` (default: the server's suggestion).
    #[arg(long)]
    pub poll_interval_secs: Option<u64>,
    /// The agent's `--read-timeout-secs`.
    #[arg(long, default_value_t = 30)]
    pub read_timeout_secs: u64,
    /// Simulated probation: how long a new version must stay up before it is committed.
    #[arg(long, default_value_t = 1000)]
    pub probation_ms: u64,
    /// A version whose simulated probation fails (`died_in_probation`), at a random moment
    /// within `--probation-ms`. Repeatable.
    #[arg(long)]
    pub fail_version: Vec<Version>,
    /// Shell command run (`sh -c`) once every agent has registered and polled: the stimulus,
    /// e.g. a `worker-release promote`. Times are measured from its start; its output goes to
    /// stderr.
    #[arg(long)]
    pub on_ready: Option<String>,
    /// Stop once `--until-fraction` of the agents run this version.
    #[arg(long)]
    pub until_version: Option<Version>,
    /// See `--until-version`.
    #[arg(long, default_value_t = 1.0)]
    pub until_fraction: f64,
    /// Stop once an agent of this channel accepted a halted statement, no update is in flight,
    /// and `--settle-ms` passed since.
    #[arg(long)]
    pub until_halted: Option<String>,
    /// See `--until-halted`.
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    /// Upper bound of the whole run. Without an `--until-*` condition the run lasts this long
    /// and succeeds; with one, reaching it is a failure (exit 2).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Interval of the `progress` lines.
    #[arg(long, default_value_t = 1000)]
    pub progress_ms: u64,
    /// Agents starting (state directory, registration, first poll) at the same time.
    #[arg(long, default_value_t = 64)]
    pub start_concurrency: usize,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// No worker token given.
    #[error("a worker token is required (--token, --token-file or WORKER_TOKEN)")]
    NoToken,
    /// A file could not be read or created.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The agent configuration built from the arguments is invalid.
    #[error("agent configuration: {0}")]
    Config(String),
    /// An invalid argument.
    #[error("{0}")]
    Usage(String),
    /// The HTTP client could not be built.
    #[error("update client: {0}")]
    Client(#[from] UpdateFailure),
    /// A state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Runs the simulation; returns the exit code (0 done, 1 error, 2 stop condition not reached).
pub async fn run(args: SimulateArgs) -> i32 {
    match simulate(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("worker-agent: simulate: error: {error}");
            1
        }
    }
}

/// Parses an [`AgentConfig`] the way `worker-agent run` does (other settings come from the
/// environment, `UPDATE_*`, like the agent's).
#[derive(Debug, Parser)]
struct ConfigArgs {
    #[command(flatten)]
    config: AgentConfig,
}

fn agent_config(
    args: &SimulateArgs,
    token: &str,
    channel: &str,
) -> Result<AgentConfig, SimulateError> {
    let mut argv: Vec<String> = [
        "simulate",
        "--update-server",
        &args.update_server,
        "--token",
        token,
        "--root",
        &args.root.to_string_lossy(),
        "--state-dir",
        &args.base_dir.to_string_lossy(),
        "--channel",
        channel,
        "--long-poll",
        if args.long_poll { "true" } else { "false" },
        "--read-timeout-secs",
        &args.read_timeout_secs.to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    if let Some(secs) = args.poll_interval_secs {
        argv.extend(["--poll-interval-secs".to_owned(), secs.to_string()]);
    }
    let mut config = ConfigArgs::try_parse_from(argv)
        .map_err(|e| SimulateError::Config(e.to_string()))?
        .config;
    // The simulation is about updating: whatever the environment says.
    config.no_auto_update = false;
    config.auto_update_env = true;
    config.force_update = false;
    Ok(config)
}

/// Raises the soft limit on open files towards what `agents` connections need.
fn raise_nofile_limit(agents: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = u64::try_from(agents).unwrap_or(u64::MAX).saturating_mul(4) + 256;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= wanted {
        return;
    }
    let target = wanted.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() || target < wanted {
        tracing::warn!(
            soft,
            hard,
            wanted,
            "the open-files limit is low for this many agents (ulimit -n)"
        );
    }
}

/// Milliseconds from `t0` to `at` (negative when before).
fn ms_since(t0: Instant, at: Instant) -> i64 {
    match at.checked_duration_since(t0) {
        Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        None => -i64::try_from(t0.duration_since(at).as_millis()).unwrap_or(i64::MAX),
    }
}

/// Why the run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Converged,
    Halted,
    Duration,
    Timeout,
    StimulusFailed,
}

impl Stop {
    fn label(self) -> &'static str {
        match self {
            Stop::Converged => "converged",
            Stop::Halted => "halted",
            Stop::Duration => "duration",
            Stop::Timeout => "timeout",
            Stop::StimulusFailed => "stimulus_failed",
        }
    }
}

fn print_line(value: &serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

async fn simulate(args: SimulateArgs) -> Result<i32, SimulateError> {
    if args.agents == 0 {
        return Err(SimulateError::Usage(
            "--agents must be at least 1".to_owned(),
        ));
    }
    if args.canary > args.agents {
        return Err(SimulateError::Usage(
            "--canary cannot exceed --agents".to_owned(),
        ));
    }
    if !(args.until_fraction > 0.0 && args.until_fraction <= 1.0) {
        return Err(SimulateError::Usage(
            "--until-fraction must be in (0, 1]".to_owned(),
        ));
    }
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| SimulateError::Io {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_owned(),
        (None, None) => return Err(SimulateError::NoToken),
    };
    let start_version = match &args.version {
        Some(version) => version.clone(),
        None => crate::child::VERSION
            .parse()
            .map_err(|e| SimulateError::Usage(format!("own version: {e}")))?,
    };
    raise_nofile_limit(args.agents);
    let seed = args
        .seed
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rand::rng().random::<u32>()));
    let mut configs = BTreeMap::new();
    for channel in ["canary", args.channel.as_str()] {
        configs.insert(channel.to_owned(), agent_config(&args, &token, channel)?);
    }
    let client = UpdateClient::new(&configs[&args.channel])?;
    std::fs::create_dir_all(&args.base_dir).map_err(|source| SimulateError::Io {
        path: args.base_dir.clone(),
        source,
    })?;

    let agents: Vec<Slot> = (0..args.agents)
        .map(|index| Slot {
            channel: if index < args.canary {
                "canary".to_owned()
            } else {
                args.channel.clone()
            },
            worker_id: format!("sim-{seed}-{index:05}"),
            dir: args.base_dir.join(format!("agent-{index:05}")),
            record: Mutex::new(Record {
                version: start_version.clone(),
                polled: false,
                permit: None,
                polls: 0,
                polls_changed: 0,
                check_failures: 0,
                attempts: Vec::new(),
                attempt_failures: Vec::new(),
                staged: Vec::new(),
                verdicts: Vec::new(),
                in_flight: None,
                saw_halted: None,
                stopped: None,
            }),
        })
        .collect();
    let fleet = Arc::new(Fleet {
        began: Instant::now(),
        t0: OnceLock::new(),
        agents,
        halt_channel: args.until_halted.clone(),
        first_halt: OnceLock::new(),
        ready: AtomicUsize::new(0),
        changed: Notify::new(),
    });
    let sim = Arc::new(Sim {
        fleet: fleet.clone(),
        client,
        configs,
        platform: manifests::BUILD_PLATFORM.to_owned(),
        probation: Duration::from_millis(args.probation_ms),
        fail: args.fail_version.iter().cloned().collect(),
    });

    let shutdown = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let gate = Arc::new(Semaphore::new(args.start_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.agents);
    for index in 0..args.agents {
        let permit = tokio::select! {
            permit = gate.clone().acquire_owned() => permit.map_err(|e| SimulateError::Usage(e.to_string()))?,
            () = tokio::time::sleep_until(deadline) => break,
        };
        let agent = match prepare_agent(&sim, index) {
            Ok(agent) => agent,
            Err(error) => {
                shutdown.cancel();
                return Err(error);
            }
        };
        fleet.agents[index].record().permit = Some(permit);
        let span = tracing::info_span!("sim", agent = index);
        tasks.push(tokio::spawn(
            agent
                .run(start_version.clone(), shutdown.clone())
                .instrument(span),
        ));
    }

    // Ready: every agent polled once (or stopped).
    let all_up = |fleet: &Fleet| {
        let stopped = fleet
            .agents
            .iter()
            .filter(|s| s.record().stopped.is_some() && !s.record().polled)
            .count();
        fleet.ready.load(Ordering::SeqCst) + stopped >= fleet.agents.len()
    };
    while !all_up(&fleet) && tokio::time::Instant::now() < deadline {
        let notified = fleet.changed.notified();
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
    let ready_ms = ms_since(fleet.began, Instant::now());
    print_line(&serde_json::json!({
        "event": "ready",
        "agents": args.agents,
        "ready": fleet.ready.load(Ordering::SeqCst),
        "startup_ms": ready_ms,
        "seed": seed,
    }));

    let mut stimulus = serde_json::Value::Null;
    let mut stop = None;
    let t0 = Instant::now();
    let _ = fleet.t0.set(t0);
    if tokio::time::Instant::now() >= deadline {
        stop = Some(Stop::Timeout);
    } else if let Some(command) = &args.on_ready {
        let (code, duration_ms) = run_stimulus(command).await;
        stimulus = serde_json::json!({
            "command": command, "exit_code": code, "duration_ms": duration_ms,
        });
        print_line(
            &serde_json::json!({"event": "stimulus", "exit_code": code, "duration_ms": duration_ms}),
        );
        if code != Some(0) {
            stop = Some(Stop::StimulusFailed);
        }
    }

    let needed = {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let needed = (args.until_fraction * args.agents as f64).ceil() as usize;
        needed.clamp(1, args.agents)
    };
    let settle = Duration::from_millis(args.settle_ms);
    let mut timeline = Vec::new();
    let mut next_progress = Instant::now();
    let stop = loop {
        if let Some(stop) = stop {
            break stop;
        }
        let snapshot = Snapshot::take(&fleet, args.until_version.as_ref());
        if Instant::now() >= next_progress {
            next_progress += Duration::from_millis(args.progress_ms.max(10));
            let elapsed = ms_since(t0, Instant::now());
            timeline.push(serde_json::json!([elapsed, snapshot.on_target]));
            print_line(&serde_json::json!({
                "event": "progress",
                "elapsed_ms": elapsed,
                "versions": snapshot.versions,
                "in_flight": snapshot.in_flight,
                "stopped": snapshot.stopped,
                "halt_seen": fleet.first_halt.get().is_some(),
            }));
        }
        if args.until_version.is_some() && snapshot.on_target >= needed {
            break Stop::Converged;
        }
        if let (Some(_), Some(halt)) = (&args.until_halted, fleet.first_halt.get()) {
            if snapshot.in_flight == 0 && halt.elapsed() >= settle {
                break Stop::Halted;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break if args.until_version.is_none() && args.until_halted.is_none() {
                Stop::Duration
            } else {
                Stop::Timeout
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stopped_at = Instant::now();
    shutdown.cancel();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    if joined.is_err() {
        tracing::warn!("some simulated agents did not stop within 30 s");
    }
    let summary = summarise(&args, &fleet, t0, stopped_at, stop, stimulus, timeline);
    print_line(&summary);
    Ok(match stop {
        Stop::Converged | Stop::Halted | Stop::Duration => 0,
        Stop::Timeout => 2,
        Stop::StimulusFailed => 1,
    })
}

/// Runs the stimulus command; its exit code (None when it could not run or died by a signal)
/// and duration.
async fn run_stimulus(command: &str) -> (Option<i32>, u64) {
    let started = Instant::now();
    let mut process = tokio::process::Command::new("sh");
    process.arg("-c").arg(command).kill_on_drop(true);
    // Its output must not mix with the JSON lines on stdout.
    if let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() {
        process.stdout(std::process::Stdio::from(stderr));
    }
    let code = match process.status().await {
        Ok(status) => status.code(),
        Err(error) => {
            tracing::error!(%error, "cannot run the --on-ready command");
            None
        }
    };
    let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (code, duration)
}
