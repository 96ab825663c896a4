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

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use manifests::Version;
use rand::Rng;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::{Outcome, Pending};
use crate::metrics::Telemetry;
use crate::state::{Counters, StateDir, StateError};
use crate::supervisor::{judge, Handover, Held, Verdict};
use crate::tasks::TaskGate;
use crate::updater::{LoopEnd, UpdateObserver, WorkerSession};

/// How long a new version gets to become ready (registered) in probation (the agent's default
/// `--ready-timeout-secs`).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Base URL of the update server.
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
    config.auto_update_env = "1".to_owned();
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

/// What happened to one agent, for the figures.
#[derive(Debug)]
struct Record {
    /// The committed (running, past probation) version.
    version: Version,
    polled: bool,
    /// Held until the first poll (bounded start-up concurrency).
    permit: Option<OwnedSemaphorePermit>,
    polls: u64,
    polls_changed: u64,
    check_failures: u64,
    attempts: Vec<(Version, Instant)>,
    attempt_failures: Vec<(Version, String, Instant)>,
    staged: Vec<(Version, Instant)>,
    /// Verdicts: (version, outcome, reason, when).
    verdicts: Vec<(Version, Outcome, String, Instant)>,
    /// Version being attempted (from the download's start to the probation's verdict).
    in_flight: Option<Version>,
    saw_halted: Option<Instant>,
    /// Why this agent stopped before the end, if it did.
    stopped: Option<String>,
}

#[derive(Debug)]
struct Slot {
    channel: String,
    worker_id: String,
    dir: PathBuf,
    record: Mutex<Record>,
}

impl Slot {
    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Shared by every agent and the controller.
#[derive(Debug)]
struct Fleet {
    began: Instant,
    /// Start of the stimulus.
    t0: OnceLock<Instant>,
    agents: Vec<Slot>,
    halt_channel: Option<String>,
    /// First time an agent of the halt channel accepted a halted statement.
    first_halt: OnceLock<Instant>,
    ready: AtomicUsize,
    changed: Notify,
}

/// One agent's observer of its updater.
#[derive(Debug)]
struct Observer {
    fleet: Arc<Fleet>,
    index: usize,
}

impl UpdateObserver for Observer {
    fn polled(&self, changed: bool) {
        let slot = &self.fleet.agents[self.index];
        let mut record = slot.record();
        record.polls += 1;
        record.polls_changed += u64::from(changed);
        if !record.polled {
            record.polled = true;
            record.permit = None;
            drop(record);
            self.fleet.ready.fetch_add(1, Ordering::SeqCst);
            self.fleet.changed.notify_waiters();
        }
    }

    fn check_failed(&self, _failure: &UpdateFailure) {
        self.fleet.agents[self.index].record().check_failures += 1;
    }

    fn statement_accepted(&self, statement: &manifests::ChannelStatement) {
        if !statement.halted {
            return;
        }
        let slot = &self.fleet.agents[self.index];
        let now = Instant::now();
        slot.record().saw_halted.get_or_insert(now);
        if self.fleet.halt_channel.as_deref() == Some(slot.channel.as_str()) {
            let _ = self.fleet.first_halt.set(now);
        }
    }

    fn attempt_started(&self, version: &Version) {
        let mut record = self.fleet.agents[self.index].record();
        record.attempts.push((version.clone(), Instant::now()));
        record.in_flight = Some(version.clone());
    }

    fn attempt_failed(&self, version: &Version, reason: FailureReason) {
        let mut record = self.fleet.agents[self.index].record();
        record
            .attempt_failures
            .push((version.clone(), reason.label(), Instant::now()));
        record.in_flight = None;
    }
}

/// Everything the agents share.
#[derive(Debug)]
struct Sim {
    fleet: Arc<Fleet>,
    client: UpdateClient,
    configs: BTreeMap<String, AgentConfig>,
    platform: String,
    probation: Duration,
    fail: BTreeSet<Version>,
}

/// How a simulated worker ended.
#[derive(Debug)]
enum ChildEnd {
    Loop(LoopEnd),
    /// It cannot go on (below the channel's minimum, unusable state): the agent stops.
    Stopped(String),
}

/// A worker task with its own shutdown.
#[derive(Debug)]
struct Worker {
    task: JoinHandle<ChildEnd>,
    stop: CancellationToken,
}

/// One simulated agent: the supervisor's loop, with its workers as tasks.
#[derive(Debug)]
struct Agent {
    sim: Arc<Sim>,
    index: usize,
    state: StateDir,
    install_path: PathBuf,
    config: AgentConfig,
}

impl Agent {
    fn slot(&self) -> &Slot {
        &self.sim.fleet.agents[self.index]
    }

    fn stop(&self, why: String) {
        tracing::warn!(agent = self.index, %why, "simulated agent stopped");
        let mut record = self.slot().record();
        record.stopped = Some(why);
        // Its start-up slot goes to the next agent.
        record.permit = None;
        drop(record);
        self.sim.fleet.changed.notify_waiters();
    }

    /// The supervisor loop: run the worker; when it staged an update, judge it.
    async fn run(self, mut version: Version, shutdown: CancellationToken) {
        let mut running: Option<Worker> = None;
        // A pending update left by an earlier run is judged first, as the supervisor does.
        if let Ok(Some(pending)) = self.state.pending() {
            running = self.update(pending, &mut version, &shutdown).await;
        }
        loop {
            if shutdown.is_cancelled() {
                if let Some(worker) = running.take() {
                    worker.stop.cancel();
                    let _ = worker.task.await;
                }
                return;
            }
            let worker = match running.take() {
                Some(worker) => worker,
                None => self.spawn_worker(version.clone(), None, &shutdown),
            };
            match worker.task.await {
                Ok(ChildEnd::Loop(LoopEnd::Shutdown)) => return,
                Ok(ChildEnd::Loop(LoopEnd::Staged)) => match self.state.pending() {
                    Ok(Some(pending)) => {
                        running = self.update(pending, &mut version, &shutdown).await;
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(%error, "pending update record unreadable; discarding it");
                        let _ = self.state.clear_pending();
                    }
                },
                Ok(ChildEnd::Stopped(why)) => return self.stop(why),
                Err(error) => {
                    tracing::error!(%error, "simulated worker panicked; restarting it");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    fn spawn_worker(
        &self,
        version: Version,
        ready: Option<oneshot::Sender<()>>,
        shutdown: &CancellationToken,
    ) -> Worker {
        let stop = shutdown.child_token();
        let worker = WorkerRun {
            sim: self.sim.clone(),
            index: self.index,
            state: self.state.clone(),
            install_path: self.install_path.clone(),
            config: self.config.clone(),
        };
        let span = tracing::info_span!("worker", version = %version);
        let task = tokio::spawn(worker.run(version, ready, stop.clone()).instrument(span));
        Worker { task, stop }
    }

    /// The supervisor's judgement of a staged update (`supervisor::judge`), with the process replaced by
    /// a task and the swap by a rename to this agent's own install file. Returns the worker
    /// left running (the new version's after a commit).
    async fn update(
        &self,
        pending: Pending,
        version: &mut Version,
        shutdown: &CancellationToken,
    ) -> Option<Worker> {
        let to_version = pending.to_version.clone();
        {
            let mut record = self.slot().record();
            record.staged.push((to_version.clone(), Instant::now()));
            record.in_flight = Some(to_version.clone());
        }
        let host = SimulatedHandover {
            agent: self,
            shutdown,
        };
        let (worker, outcome, reason) = match judge(
            &host,
            &self.state,
            &self.config,
            &self.install_path,
            pending,
        )
        .await
        {
            Verdict::Committed(worker) => (Some(worker), Outcome::Success, String::new()),
            Verdict::Ended { outcome, reason } => (None, outcome, reason.label()),
            Verdict::Abandoned => return None,
        };
        let mut record = self.slot().record();
        record
            .verdicts
            .push((to_version.clone(), outcome, reason, Instant::now()));
        record.in_flight = None;
        if worker.is_some() {
            record.version = to_version.clone();
            drop(record);
            *version = to_version;
            self.sim.fleet.changed.notify_waiters();
        }
        worker
    }
}

/// The simulated probation host: the new version is another worker task of the agent; a
/// version named by `--fail-version` dies at a random moment within the probation time.
#[derive(Debug)]
struct SimulatedHandover<'a> {
    agent: &'a Agent,
    shutdown: &'a CancellationToken,
}

impl Handover for SimulatedHandover<'_> {
    type Worker = Worker;

    async fn probation(&self, pending: &Pending) -> Held<Worker> {
        let (agent, shutdown) = (self.agent, self.shutdown);
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut worker = agent.spawn_worker(pending.to_version.clone(), Some(ready_tx), shutdown);
        let ready = tokio::select! {
            ready = tokio::time::timeout(READY_TIMEOUT, ready_rx) => ready,
            () = shutdown.cancelled() => {
                self.discard(worker).await;
                return Held::Interrupted;
            }
        };
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                let _ = (&mut worker.task).await;
                return Held::Failed {
                    reason: FailureReason::ExitedBeforeReady,
                    detail: "the new version stopped before becoming ready".to_owned(),
                };
            }
            Err(_) => {
                self.discard(worker).await;
                return Held::Failed {
                    reason: FailureReason::NotReady,
                    detail: format!("not ready within {} s", READY_TIMEOUT.as_secs()),
                };
            }
        }
        let fails = agent
            .sim
            .fail
            .iter()
            .any(|v| v.cmp_precedence(&pending.to_version).is_eq());
        let hold = if fails {
            let millis = u64::try_from(agent.sim.probation.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rand::rng().random_range(0..=millis))
        } else {
            agent.sim.probation
        };
        let died = Held::Failed {
            reason: FailureReason::DiedInProbation,
            detail: "the new version exited during probation".to_owned(),
        };
        tokio::select! {
            () = tokio::time::sleep(hold) => {}
            _ = &mut worker.task => return died,
            () = shutdown.cancelled() => {
                self.discard(worker).await;
                return Held::Interrupted;
            }
        }
        if fails {
            self.discard(worker).await;
            return died;
        }
        Held::Passed(worker)
    }

    /// The swap, simulated: the staged file is renamed over this agent's install file.
    fn commit(&self, pending: &Pending) -> std::io::Result<()> {
        let install_path = &self.agent.install_path;
        std::fs::rename(&pending.staged_path, install_path)?;
        crate::state::sync_dir(crate::handover::install_dir(install_path))
    }

    async fn discard(&self, worker: Worker) {
        worker.stop.cancel();
        let _ = worker.task.await;
    }
}

/// One simulated worker process: `child.rs` without the metrics server and the task layer.
#[derive(Debug)]
struct WorkerRun {
    sim: Arc<Sim>,
    index: usize,
    state: StateDir,
    install_path: PathBuf,
    config: AgentConfig,
}

impl WorkerRun {
    async fn run(
        self,
        version: Version,
        ready: Option<oneshot::Sender<()>>,
        shutdown: CancellationToken,
    ) -> ChildEnd {
        let slot = &self.sim.fleet.agents[self.index];
        let session = WorkerSession {
            state: self.state.clone(),
            client: self.sim.client.clone(),
            telemetry: Arc::new(Telemetry::new(self.state.clone(), &version.to_string())),
            worker_id: slot.worker_id.clone(),
            version: version.clone(),
            platform: self.sim.platform.clone(),
        };
        let registered = session
            .register(&self.config.channel, &shutdown, |_| {
                slot.record().check_failures += 1;
            })
            .await;
        let Some(handshake) = registered else {
            return ChildEnd::Loop(LoopEnd::Shutdown);
        };
        if handshake.below_minimum {
            return ChildEnd::Stopped(format!(
                "version {version} is below the minimum version {} of channel {}",
                handshake.minimum_version, self.config.channel
            ));
        }
        if let Some(ready) = ready {
            let _ = ready.send(());
        }
        let reporting = session.start_reporting(shutdown.clone()).await;
        let gate = TaskGate::new();
        let updater =
            match session.updater(&self.config, gate, self.install_path.clone(), &handshake) {
                Ok(updater) => updater.with_observer(Arc::new(Observer {
                    fleet: self.sim.fleet.clone(),
                    index: self.index,
                })),
                Err(failure) => {
                    session.finish(reporting).await;
                    return ChildEnd::Stopped(failure.to_string());
                }
            };
        let end = updater.run(shutdown.clone()).await;
        session.finish(reporting).await;
        ChildEnd::Loop(end)
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

fn prepare_agent(sim: &Arc<Sim>, index: usize) -> Result<Agent, SimulateError> {
    let slot = &sim.fleet.agents[index];
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SimulateError::Io { path, source }
    };
    let mut config = sim.configs[&slot.channel].clone();
    config.state_dir = slot.dir.join("state");
    let install_dir = slot.dir.join("install");
    std::fs::create_dir_all(&install_dir).map_err(io(&install_dir))?;
    let install_path = install_dir.join("worker-agent");
    config.install_path = Some(install_path.clone());
    let state = StateDir::open(&config.state_dir)?;
    let id_file = state.path().join("worker_id");
    if !id_file.exists() {
        crate::state::write_atomic(&id_file, format!("{}\n", slot.worker_id).as_bytes())?;
    }
    let worker_id = state.worker_id()?;
    if worker_id != slot.worker_id {
        return Err(SimulateError::Usage(format!(
            "{} already holds worker id {worker_id}, not {} (another --seed?): use an empty --base-dir",
            state.path().display(),
            slot.worker_id
        )));
    }
    Ok(Agent {
        sim: sim.clone(),
        index,
        state,
        install_path,
        config,
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

/// Counts at one instant.
#[derive(Debug)]
struct Snapshot {
    versions: BTreeMap<String, usize>,
    on_target: usize,
    in_flight: usize,
    stopped: usize,
}

impl Snapshot {
    fn take(fleet: &Fleet, target: Option<&Version>) -> Self {
        let mut snapshot = Snapshot {
            versions: BTreeMap::new(),
            on_target: 0,
            in_flight: 0,
            stopped: 0,
        };
        for slot in &fleet.agents {
            let record = slot.record();
            *snapshot
                .versions
                .entry(record.version.to_string())
                .or_default() += 1;
            if target.is_some_and(|t| *t == record.version) {
                snapshot.on_target += 1;
            }
            snapshot.in_flight += usize::from(record.in_flight.is_some());
            snapshot.stopped += usize::from(record.stopped.is_some());
        }
        snapshot
    }
}

/// The time by which `share` of `total` agents had an event, from sorted event times.
fn time_to(sorted: &[i64], total: usize, share: f64) -> Option<i64> {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((share * total as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

fn percentiles(mut times: Vec<i64>, total: usize) -> serde_json::Value {
    times.sort_unstable();
    serde_json::json!({
        "agents": times.len(),
        "first_ms": times.first(),
        "p50_ms": time_to(&times, total, 0.5),
        "p90_ms": time_to(&times, total, 0.9),
        "p99_ms": time_to(&times, total, 0.99),
        "p100_ms": time_to(&times, total, 1.0),
    })
}

fn add_counters(total: &mut Counters, one: &Counters) {
    total.attempts += one.attempts;
    total.successes += one.successes;
    total.deferred += one.deferred;
    total.download_bytes += one.download_bytes;
    for (reason, n) in &one.failures {
        *total.failures.entry(reason.clone()).or_default() += n;
    }
    for (reason, n) in &one.rollbacks {
        *total.rollbacks.entry(reason.clone()).or_default() += n;
    }
}

/// Per channel: agents, final versions, and per version how many agents attempted, staged,
/// committed or rolled it back; the persisted agent counters, summed.
#[derive(Debug, Default)]
struct ChannelFigures {
    agents: usize,
    versions: BTreeMap<String, usize>,
    attempted: BTreeMap<String, usize>,
    staged: BTreeMap<String, usize>,
    succeeded: BTreeMap<String, usize>,
    rolled_back: BTreeMap<String, usize>,
    attempt_failures: BTreeMap<String, usize>,
    saw_halted: usize,
    counters: Counters,
}

fn count_versions<'a>(
    map: &mut BTreeMap<String, usize>,
    versions: impl Iterator<Item = &'a Version>,
) {
    let distinct: BTreeSet<String> = versions.map(ToString::to_string).collect();
    for version in distinct {
        *map.entry(version).or_default() += 1;
    }
}

fn summarise(
    args: &SimulateArgs,
    fleet: &Fleet,
    t0: Instant,
    stopped_at: Instant,
    stop: Stop,
    stimulus: serde_json::Value,
    timeline: Vec<serde_json::Value>,
) -> serde_json::Value {
    let mut channels: BTreeMap<String, ChannelFigures> = BTreeMap::new();
    let mut committed = Vec::new();
    let mut staged = Vec::new();
    let mut totals = serde_json::Map::new();
    let (mut polls, mut polls_changed, mut check_failures) = (0u64, 0u64, 0u64);
    let mut stopped = BTreeMap::<String, usize>::new();
    let mut counters = Counters::default();
    for slot in &fleet.agents {
        let record = slot.record();
        let figures = channels.entry(slot.channel.clone()).or_default();
        figures.agents += 1;
        *figures
            .versions
            .entry(record.version.to_string())
            .or_default() += 1;
        count_versions(&mut figures.attempted, record.attempts.iter().map(|a| &a.0));
        count_versions(&mut figures.staged, record.staged.iter().map(|a| &a.0));
        count_versions(
            &mut figures.succeeded,
            record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::Success)
                .map(|v| &v.0),
        );
        count_versions(
            &mut figures.rolled_back,
            record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::RolledBack)
                .map(|v| &v.0),
        );
        for (_, reason, _) in &record.attempt_failures {
            *figures.attempt_failures.entry(reason.clone()).or_default() += 1;
        }
        figures.saw_halted += usize::from(record.saw_halted.is_some());
        polls += record.polls;
        polls_changed += record.polls_changed;
        check_failures += record.check_failures;
        if let Some(why) = &record.stopped {
            *stopped.entry(why.clone()).or_default() += 1;
        }
        if let Some(target) = &args.until_version {
            if let Some((_, _, _, at)) = record
                .verdicts
                .iter()
                .find(|v| v.0 == *target && v.1 == Outcome::Success)
            {
                committed.push(ms_since(t0, *at));
            }
            if let Some((_, at)) = record.staged.iter().find(|v| v.0 == *target) {
                staged.push(ms_since(t0, *at));
            }
        }
        drop(record);
        // The agent's own persisted counters (`worker_update_*`).
        if let Ok(one) = StateDir::open(&slot.dir.join("state")).and_then(|s| s.counters()) {
            add_counters(&mut figures.counters, &one);
            add_counters(&mut counters, &one);
        }
    }
    totals.insert("polls".to_owned(), polls.into());
    totals.insert("polls_changed".to_owned(), polls_changed.into());
    totals.insert("check_failures".to_owned(), check_failures.into());

    let halt = args.until_halted.as_ref().map(|channel| {
        let first = fleet.first_halt.get().copied();
        let (mut before, mut after, mut verdicts_before, mut verdicts_after, mut spared) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        for slot in fleet.agents.iter().filter(|s| &s.channel == channel) {
            let record = slot.record();
            let bad: Vec<_> = record
                .attempts
                .iter()
                .filter(|a| args.fail_version.contains(&a.0))
                .collect();
            if bad.is_empty() {
                spared += 1;
            }
            for (_, at) in bad {
                if first.is_some_and(|h| *at >= h) {
                    after += 1;
                } else {
                    before += 1;
                }
            }
            for (_, _, _, at) in record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::RolledBack && args.fail_version.contains(&v.0))
            {
                if first.is_some_and(|h| *at >= h) {
                    verdicts_after += 1;
                } else {
                    verdicts_before += 1;
                }
            }
        }
        serde_json::json!({
            "channel": channel,
            "first_seen_ms": first.map(|h| ms_since(t0, h)),
            "attempts_started_before_halt": before,
            "attempts_started_after_halt": after,
            "rolled_back_before_halt": verdicts_before,
            "rolled_back_after_halt": verdicts_after,
            "spared": spared,
        })
    });
    let by_channel: serde_json::Map<String, serde_json::Value> = channels
        .into_iter()
        .map(|(name, f)| {
            (
                name,
                serde_json::json!({
                    "agents": f.agents,
                    "versions": f.versions,
                    "attempted": f.attempted,
                    "staged": f.staged,
                    "succeeded": f.succeeded,
                    "rolled_back": f.rolled_back,
                    "attempt_failures": f.attempt_failures,
                    "saw_halted": f.saw_halted,
                    "counters": counters_json(&f.counters),
                }),
            )
        })
        .collect();
    let final_versions = Snapshot::take(fleet, args.until_version.as_ref()).versions;
    serde_json::json!({
        "event": "summary",
        "agents": args.agents,
        "canary": args.canary,
        "channel": args.channel,
        "long_poll": args.long_poll,
        "poll_interval_secs": args.poll_interval_secs,
        "probation_ms": args.probation_ms,
        "fail_versions": args.fail_version.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "stop": stop.label(),
        "run_ms": ms_since(t0, stopped_at),
        "stimulus": stimulus,
        "target_version": args.until_version.as_ref().map(ToString::to_string),
        "versions": final_versions,
        "committed": args.until_version.as_ref().map(|_| percentiles(committed, args.agents)),
        "staged": args.until_version.as_ref().map(|_| percentiles(staged, args.agents)),
        "halt": halt,
        "by_channel": by_channel,
        "totals": totals,
        "counters": counters_json(&counters),
        "stopped_agents": stopped,
        "timeline": timeline,
    })
}

fn counters_json(counters: &Counters) -> serde_json::Value {
    serde_json::json!({
        "attempts": counters.attempts,
        "successes": counters.successes,
        "failures": counters.failures,
        "rollbacks": counters.rollbacks,
        "deferred": counters.deferred,
        "download_bytes": counters.download_bytes,
    })
}
