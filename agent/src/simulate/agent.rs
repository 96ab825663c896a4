//! One simulated agent: the supervisor's loop and its judgement of a staged update over a
//! simulated handover host, with each worker process replaced by a task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifests::Version;
use rand::Rng;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::fleet::{Observer, Sim, Slot};
use super::SimulateError;
use crate::config::AgentConfig;
use crate::error::FailureReason;
use crate::handover::{Outcome, Pending};
use crate::metrics::Telemetry;
use crate::state::StateDir;
use crate::supervisor::{judge, Handover, Held, Verdict};
use crate::tasks::TaskGate;
use crate::updater::{LoopEnd, WorkerSession};

/// How long a new version gets to become ready (registered) in probation (the agent's default
/// `--ready-timeout-secs`).
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How a simulated worker ended.
#[derive(Debug)]
pub(super) enum ChildEnd {
    Loop(LoopEnd),
    /// It cannot go on (below the channel's minimum, unusable state): the agent stops.
    Stopped(String),
}

/// A worker task with its own shutdown.
#[derive(Debug)]
pub(super) struct Worker {
    task: JoinHandle<ChildEnd>,
    stop: CancellationToken,
}

/// One simulated agent: the supervisor's loop, with its workers as tasks.
#[derive(Debug)]
pub(super) struct Agent {
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
    pub(super) async fn run(self, mut version: Version, shutdown: CancellationToken) {
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
            Verdict::Installed => (None, Outcome::Success, String::new()),
            Verdict::Ended { outcome, reason } => (None, outcome, reason.label()),
            Verdict::Abandoned => return None,
        };
        let mut record = self.slot().record();
        record
            .verdicts
            .push((to_version.clone(), outcome, reason, Instant::now()));
        record.in_flight = None;
        if outcome == Outcome::Success {
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
pub(super) struct SimulatedHandover<'a> {
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
pub(super) struct WorkerRun {
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
        // As the real worker: the handshake's unsigned `below_minimum` is not acted on (the
        // updater applies a verified statement's signed minimum).
        // Only a version in probation is told to announce its readiness.
        let in_probation = ready.is_some();
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
        let end = if session.wait_for_commit(in_probation, &shutdown).await {
            updater.run(shutdown.clone()).await
        } else {
            LoopEnd::Shutdown
        };
        session.finish(reporting).await;
        ChildEnd::Loop(end)
    }
}

pub(super) fn prepare_agent(sim: &Arc<Sim>, index: usize) -> Result<Agent, SimulateError> {
    let slot = &sim.fleet.agents[index];
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SimulateError::Io { path, source }
    };
    let mut config = sim.configs[&slot.channel].clone();
    config.update_server = spread_over_servers(&config.update_server, index);
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

/// `--update-server` rotated so that agent `index` starts with entry `index mod n`: a fleet
/// given every replica's URL spreads over them, and each agent fails over along its list as
/// the real agent does.
fn spread_over_servers(urls: &str, index: usize) -> String {
    let mut list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect();
    if !list.is_empty() {
        let by = index % list.len();
        list.rotate_left(by);
    }
    list.join(",")
}

#[cfg(test)]
mod tests {
    use super::spread_over_servers;

    #[test]
    fn agents_start_on_replicas_in_turn_and_keep_the_others_for_failover() {
        let urls = "http://a, http://b,,http://c";
        assert_eq!(spread_over_servers(urls, 0), "http://a,http://b,http://c");
        assert_eq!(spread_over_servers(urls, 1), "http://b,http://c,http://a");
        assert_eq!(spread_over_servers(urls, 5), "http://c,http://a,http://b");
        assert_eq!(spread_over_servers("http://only", 7), "http://only");
    }
}
