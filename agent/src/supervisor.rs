//! The supervisor: the process that survives an update to judge it.
//!
//! `worker-agent run` starts as the supervisor. It runs the worker as a child process from the
//! install path. When a child exits with [`EXIT_STAGED`], a verified update waits in the
//! install directory; the supervisor re-verifies it against the signature chain, then runs it
//! *from its staged file* as the new child and holds it in probation: it must become ready
//! (write `ready.json` with its pid and version) within `--ready-timeout-secs` and stay up
//! `--probation-secs`. Only then is the install path swapped, atomically: the running binary is
//! kept as `<install>.previous`, the staged file is renamed over the install path, the directory
//! fsync'd. A failed probation deletes the staged file, restarts the old binary and queues a
//! `rolled_back` outcome (the child quarantines the version and reports it).
//!
//! So the install path only ever holds a binary that passed probation (or the original one): a
//! `kill -9` at any instant, followed by a restart by hand or by systemd, always starts a
//! complete, verified, proven executable; a probation cut short by such a crash is simply run
//! again (at most [`MAX_PROBATION_ATTEMPTS`] times). A stop (SIGINT/SIGTERM, [`crate::stop`])
//! is no verdict either: the new version is stopped within the drain bound, the attempt is not
//! counted, reported as `deferred`/`probation_interrupted`, and probed again on the next start.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use manifests::{RoleName, Timestamp};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::{
    self, Outcome, OutcomeRecord, Pending, EXIT_REFUSED, EXIT_STAGED, INSTALL_PATH_ENV,
    PROBATION_ENV, ROLE_CHILD, ROLE_ENV,
};
use crate::state::{sync_dir, StateDir};

/// `main` asks the supervisor module which role this process plays.
pub use crate::handover::is_child;

/// Interrupted probations retried before the update counts as failed.
pub const MAX_PROBATION_ATTEMPTS: u32 = 3;

/// Resolves the install path once at start-up: the configured one, or this executable with
/// symlinks resolved (so a later swap replaces the real file, not a link to it).
pub fn resolve_install_path(config: &AgentConfig) -> std::io::Result<PathBuf> {
    match &config.install_path {
        Some(path) => std::fs::canonicalize(path),
        None => std::fs::canonicalize(std::env::current_exe()?),
    }
}

/// How long after a worker's exit in probation a stop request still explains it (see
/// [`Supervisor::stopping`]).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How a worker ended, for the log: `exit status: 1`, `signal: 9 (SIGKILL)`, or why waiting
/// for it failed (never Rust's debug form).
fn exit_description(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("cannot wait for it: {error}"),
    }
}

/// The command-line flag that forces one update (see `AgentConfig::force_update`).
const FORCE_UPDATE_FLAG: &str = "--force-update";

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    config: AgentConfig,
    state: StateDir,
    install_path: PathBuf,
    child_args: Vec<OsString>,
    /// Whether this process holds the update lock (a second instance does not update).
    updater: bool,
    /// Cancelled by SIGTERM/SIGINT ([`crate::stop::listen`]): stop, whatever is going on.
    stop: CancellationToken,
}

/// How a staged version's probation ended.
pub(crate) enum Held<W> {
    /// It became ready and stayed up: commit it (the worker keeps running).
    Passed(W),
    /// It failed: roll back.
    Failed {
        /// Why.
        reason: FailureReason,
        /// What happened, for the log.
        detail: String,
    },
    /// Stopped from outside (SIGINT/SIGTERM, shutdown) before a verdict: no verdict on the
    /// version. `pending.json` and the staged file stay, so the next start runs the probation
    /// again; the interruption is reported as `deferred` / `probation_interrupted`.
    Interrupted,
}

/// Where a staged update is tried and installed. The real agent's host ([`Supervisor`]) runs
/// the staged binary as its child process and swaps the install path; the fleet simulator's
/// runs a worker task and renames the staged file within the agent's directory. What to do
/// around them (verify, count attempts, judge, commit or roll back, record, quarantine) is
/// [`judge`]'s, written once.
pub(crate) trait Handover {
    /// A running worker (a child process, a task).
    type Worker;
    /// Starts the staged version of `pending` and holds it in probation.
    async fn probation(&self, pending: &Pending) -> Held<Self::Worker>;
    /// Makes the staged version the installed one.
    fn commit(&self, pending: &Pending) -> std::io::Result<()>;
    /// Stops a worker that passed probation but cannot stay (its commit failed).
    async fn discard(&self, worker: Self::Worker);
}

/// What [`judge`] decided.
pub(crate) enum Verdict<W> {
    /// Committed: the new version's worker runs on.
    Committed(W),
    /// Refused or rolled back (recorded, reported by the next worker, quarantined if rolled
    /// back); the previous version must be started again.
    Ended {
        /// `failure` or `rolled_back`.
        outcome: Outcome,
        /// Why.
        reason: FailureReason,
    },
    /// An earlier commit installed it, then the agent stopped (crashed) before clearing
    /// `pending.json`: recorded now as the success it was; the install path holds it, start it.
    Installed,
    /// No verdict (another install path's record, a state directory that cannot record the
    /// attempt, an interruption): nothing recorded, but for an interruption its
    /// `probation_interrupted` report (see [`record_interruption`]).
    Abandoned,
}

/// Runs a pending update through `host`: re-verify the staged file, count the probation
/// attempt, hold the new version in probation, then commit it or roll it back, and record the
/// outcome.
pub(crate) async fn judge<H: Handover>(
    host: &H,
    state: &StateDir,
    config: &AgentConfig,
    install_path: &Path,
    mut pending: Pending,
) -> Verdict<H::Worker> {
    if pending.install_path != install_path {
        tracing::warn!(staged_for = %pending.install_path.display(), "pending update is for another install path; discarding it");
        let _ = state.clear_pending();
        return Verdict::Abandoned;
    }
    if already_installed(state, config, &pending) {
        tracing::info!(
            "the install path already holds this version: it was committed before the agent stopped"
        );
        let duration_ms = finish_update(state, &pending, Outcome::Success, None);
        tracing::info!(outcome = %Outcome::Success, reason = "", duration_ms, "update finished");
        return Verdict::Installed;
    }
    if let Err(failure) = verify_staged(state, config, &pending) {
        tracing::error!(reason = %failure.reason, error = %failure.message, "staged update does not verify; discarding it");
        return end(state, &pending, Outcome::Failure, failure.reason, None);
    }
    pending.probation_attempts += 1;
    if pending.probation_attempts > MAX_PROBATION_ATTEMPTS {
        tracing::error!(
            attempts = pending.probation_attempts - 1,
            "probation was interrupted too often; giving up on this version"
        );
        let reason = FailureReason::ProbationInterrupted;
        return end(state, &pending, Outcome::RolledBack, reason, None);
    }
    if let Err(error) = state.save_pending(&pending) {
        tracing::error!(%error, "cannot record the probation attempt");
        return Verdict::Abandoned;
    }
    let started = Instant::now();
    match host.probation(&pending).await {
        Held::Passed(worker) => match host.commit(&pending) {
            Ok(()) => {
                tracing::info!(
                    elapsed_s = started.elapsed().as_secs(),
                    "probation passed; update committed"
                );
                let duration_ms = finish_update(state, &pending, Outcome::Success, None);
                tracing::info!(outcome = %Outcome::Success, reason = "", detail = "", duration_ms, "update finished");
                Verdict::Committed(worker)
            }
            Err(error) => {
                // The install path still holds the old binary: roll back.
                tracing::error!(%error, "could not swap the install path; rolling back");
                host.discard(worker).await;
                let reason = FailureReason::SwapFailed;
                end(
                    state,
                    &pending,
                    Outcome::RolledBack,
                    reason,
                    Some(&error.to_string()),
                )
            }
        },
        Held::Failed { reason, detail } => {
            tracing::error!(%reason, %detail, "probation failed; rolling back to the previous version");
            end(state, &pending, Outcome::RolledBack, reason, Some(&detail))
        }
        Held::Interrupted => {
            // A stop is no verdict: this probation does not count against the version.
            pending.probation_attempts -= 1;
            record_interruption(state, &pending);
            Verdict::Abandoned
        }
    }
}

/// Records a probation interrupted by a stop: `pending.json` stays (with the attempt not
/// counted) and so does the staged file, nothing is quarantined, and a `deferred` outcome with
/// reason `probation_interrupted` is queued, which the server does not count against the
/// release (neither auto-halt nor the promotion gate counts `deferred`).
fn record_interruption(state: &StateDir, pending: &Pending) {
    if let Err(error) = state.save_pending(pending) {
        tracing::error!(%error, "could not record the interrupted probation");
    }
    let record = outcome_record(
        pending,
        Outcome::Deferred,
        Some(FailureReason::ProbationInterrupted),
    );
    if let Err(error) = state.push_outcome(&record, false) {
        tracing::error!(%error, "could not queue the outcome");
    }
    tracing::warn!(
        outcome = %record.outcome,
        reason = %record.reason,
        version = %pending.to_version,
        "probation interrupted by a stop: no verdict; the new version is probed again on the next start"
    );
}

/// Records a verdict other than success (see [`finish_update`]) and logs it.
fn end<W>(
    state: &StateDir,
    pending: &Pending,
    outcome: Outcome,
    reason: FailureReason,
    detail: Option<&str>,
) -> Verdict<W> {
    let duration_ms = finish_update(state, pending, outcome, Some(reason));
    tracing::info!(%outcome, %reason, detail = detail.unwrap_or_default(), duration_ms, "update finished");
    Verdict::Ended { outcome, reason }
}

impl Supervisor {
    /// A supervisor for `install_path`, re-running the child with `child_args`.
    pub fn new(
        config: AgentConfig,
        state: StateDir,
        install_path: PathBuf,
        child_args: Vec<OsString>,
        updater: bool,
    ) -> Self {
        Supervisor {
            config,
            state,
            install_path,
            child_args,
            updater,
            stop: CancellationToken::new(),
        }
    }

    /// Supervises until SIGTERM/SIGINT (exit 0) or a child refusing to run (exit 78).
    pub async fn run(mut self) -> i32 {
        if let Err(error) = crate::stop::listen(self.stop.clone()) {
            tracing::error!(%error, "cannot listen for SIGTERM/SIGINT");
            return 1;
        }
        if self.updater {
            // Before any worker (the only process that applies a delta) runs.
            handover::remove_stale_patching(&self.install_path);
        }
        let mut child: Option<Child> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            if child.is_none() && self.stop.is_cancelled() {
                tracing::info!("stopped");
                return 0;
            }
            if child.is_none() && self.updater {
                if let Some(pending) = self.pending() {
                    // `--force-update` was for this update: the version it installs (in
                    // probation, after the commit, on every restart) runs unforced.
                    self.child_args.retain(|arg| arg != FORCE_UPDATE_FLAG);
                    child = self.update(pending).await;
                    if child.is_none() && self.stop.is_cancelled() {
                        tracing::info!("stopped");
                        return 0;
                    }
                }
            }
            let mut running = match child.take() {
                Some(running) => running,
                None => match self.spawn(&self.install_path, None) {
                    Ok(spawned) => spawned,
                    Err(error) => {
                        tracing::error!(%error, path = %self.install_path.display(), "cannot start the worker");
                        self.pause(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let status = tokio::select! {
                status = running.wait() => status,
                () = self.stop.cancelled() => return self.shut_down(running).await,
            };
            let code = status.as_ref().ok().and_then(ExitStatus::code);
            match code {
                Some(EXIT_STAGED) => {
                    tracing::info!("worker staged an update");
                    backoff = Duration::from_secs(1);
                }
                Some(EXIT_REFUSED) => {
                    tracing::error!("worker refused to start (see its log); stopping");
                    return EXIT_REFUSED;
                }
                _ => {
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::error!(status = %exit_description(&status), backoff_s = backoff.as_secs(), "worker exited; restarting it");
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    fn pending(&self) -> Option<Pending> {
        match self.state.pending() {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "pending update record unreadable; discarding it");
                let _ = self.state.clear_pending();
                None
            }
        }
    }

    async fn shut_down(&self, mut child: Child) -> i32 {
        let limit = crate::stop::drain_limit(&self.config);
        crate::stop::stop_worker(&mut child, limit, "the worker").await;
        0
    }

    /// Sleeps `backoff`, or less when a stop is requested meanwhile.
    async fn pause(&self, backoff: Duration) {
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = self.stop.cancelled() => {}
        }
    }

    /// Whether a stop is requested now or within [`STOP_GRACE`]: a Ctrl-C reaches the worker
    /// and the supervisor at once, and the worker's exit may be seen first.
    async fn stopping(&self) -> bool {
        tokio::time::timeout(STOP_GRACE, self.stop.cancelled())
            .await
            .is_ok()
    }

    /// Ends a probation interrupted by a stop: the new version is asked to finish (bounded).
    async fn interrupt_probation(&self, mut child: Child, version: &str) -> Held<Child> {
        let what = format!("the new version {version} in probation");
        crate::stop::stop_worker(&mut child, crate::stop::drain_limit(&self.config), &what).await;
        Held::Interrupted
    }

    fn spawn(&self, program: &Path, probation_of: Option<&str>) -> std::io::Result<Child> {
        let _ = self.state.clear_ready();
        let mut command = Command::new(program);
        command
            .args(&self.child_args)
            .env(ROLE_ENV, ROLE_CHILD)
            .env(INSTALL_PATH_ENV, &self.install_path)
            .kill_on_drop(true);
        if !self.updater {
            command.env("AUTO_UPDATE", "0");
        }
        if let Some(version) = probation_of {
            command.env(PROBATION_ENV, version);
        }
        let child = command.spawn()?;
        tracing::info!(pid = child.id().unwrap_or_default(), program = %program.display(), probation = probation_of.unwrap_or_default(), "worker started");
        Ok(child)
    }

    /// Runs a pending update: verify, probation, then commit or roll back. Returns the child
    /// left running (the new one after a commit; `None` after a rollback).
    async fn update(&self, pending: Pending) -> Option<Child> {
        use tracing::Instrument;
        let span = tracing::info_span!("update", correlation_id = %pending.correlation_id, from = %pending.from_version, to = %pending.to_version);
        self.update_in_span(pending).instrument(span).await
    }

    async fn update_in_span(&self, pending: Pending) -> Option<Child> {
        match judge(self, &self.state, &self.config, &self.install_path, pending).await {
            Verdict::Committed(child) => Some(child),
            Verdict::Installed | Verdict::Ended { .. } | Verdict::Abandoned => None,
        }
    }
}

impl Handover for Supervisor {
    type Worker = Child;

    async fn probation(&self, pending: &Pending) -> Held<Child> {
        let version = pending.to_version.to_string();
        let mut child = match self.spawn(&pending.staged_path, Some(&version)) {
            Ok(child) => child,
            Err(error) => {
                let reason = match error.raw_os_error() {
                    Some(8) => FailureReason::NotExecutable,  // ENOEXEC
                    Some(13) => FailureReason::NotExecutable, // EACCES
                    _ => FailureReason::SpawnFailed,
                };
                return Held::Failed {
                    reason,
                    detail: error.to_string(),
                };
            }
        };
        crate::failpoint::hit("restarting", self.state.path()).await;
        let pid = child.id().unwrap_or_default();
        let ready_deadline = Instant::now() + Duration::from_secs(self.config.ready_timeout_secs);
        // Whether the new version announced itself: `None` not yet, `Some(None)` ready,
        // `Some(Some(failed))` its self-check failed (announced in `ready.json`, then it exits).
        let announced = || {
            let ready = self.state.ready().ok().flatten();
            let ready = ready.filter(|r| r.pid == pid && r.version == version)?;
            Some(ready.self_check_failed.map(|detail| Held::Failed {
                reason: FailureReason::SelfCheckFailed,
                detail,
            }))
        };
        loop {
            match announced() {
                Some(Some(failed)) => return failed,
                Some(None) => break,
                None => {}
            }
            if self.stop.is_cancelled() {
                return self.interrupt_probation(child, &version).await;
            }
            if let Ok(Some(status)) = child.try_wait() {
                if self.stopping().await {
                    return Held::Interrupted;
                }
                if let Some(Some(failed)) = announced() {
                    return failed;
                }
                return Held::Failed {
                    reason: FailureReason::ExitedBeforeReady,
                    detail: format!("the new version exited ({status}) before becoming ready"),
                };
            }
            if Instant::now() >= ready_deadline {
                let _ = child.kill().await;
                return Held::Failed {
                    reason: FailureReason::NotReady,
                    detail: format!(
                        "not ready within {} s (hung?)",
                        self.config.ready_timeout_secs
                    ),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(
            pid,
            probation_s = self.config.probation_secs,
            "new version is ready; holding it in probation"
        );
        let hold = async {
            crate::failpoint::hit("probation", self.state.path()).await;
            tokio::time::sleep(self.config.probation()).await;
        };
        tokio::select! {
            status = child.wait() => {
                if self.stopping().await {
                    return Held::Interrupted;
                }
                Held::Failed {
                    reason: FailureReason::DiedInProbation,
                    detail: format!("the new version exited ({}) during probation", status.map_or_else(|e| e.to_string(), |s| s.to_string())),
                }
            }
            () = hold => Held::Passed(child),
            () = self.stop.cancelled() => self.interrupt_probation(child, &version).await,
        }
    }

    /// Swaps the install path: previous kept, staged renamed over it, directory fsync'd.
    fn commit(&self, pending: &Pending) -> std::io::Result<()> {
        let install = &self.install_path;
        let dir = handover::install_dir(install);
        let previous = handover::previous_path(install);
        let previous_tmp = handover::previous_tmp_path(install);
        let _ = std::fs::remove_file(&previous_tmp);
        std::fs::hard_link(install, &previous_tmp)?;
        std::fs::rename(&previous_tmp, &previous)?;
        // When `previous` already is this very file (a commit interrupted after this step and
        // now redone), rename(2) of one hard link onto another of the same inode does nothing
        // and leaves the temporary name behind.
        let _ = std::fs::remove_file(&previous_tmp);
        crate::failpoint::hit_blocking("swapping", self.state.path());
        std::fs::rename(&pending.staged_path, install)?;
        sync_dir(dir)?;
        // Installed, but `pending.json` not yet cleared: recovery must see the commit happened.
        crate::failpoint::hit_blocking("swapped", self.state.path());
        Ok(())
    }

    async fn discard(&self, child: Child) {
        // Killed on drop.
        drop(child);
    }
}

/// Re-checks a staged file against the release's signature chain (its root from the state
/// directory) and the signed hash and size: nothing is executed that was not verified here.
pub fn verify_staged(
    state: &StateDir,
    config: &AgentConfig,
    pending: &Pending,
) -> Result<(), UpdateFailure> {
    verify_release_file(state, config, pending, &pending.staged_path)
}

/// Whether `pending` was committed already: its staged file is gone and the install path is
/// the release's artifact (signature chain, SHA-256 and size). A crash between the commit's
/// rename and the clearing of `pending.json` leaves exactly that.
fn already_installed(state: &StateDir, config: &AgentConfig, pending: &Pending) -> bool {
    !pending.staged_path.exists()
        && verify_release_file(state, config, pending, &pending.install_path).is_ok()
}

/// Checks `file` against `pending`'s release: signed by the release role of the trusted root,
/// the version announced, and the artifact's signed hash and size for its platform.
fn verify_release_file(
    state: &StateDir,
    config: &AgentConfig,
    pending: &Pending,
    file: &Path,
) -> Result<(), UpdateFailure> {
    let trust = state
        .load_trust(&config.root, &config.channel)
        .map_err(|e| UpdateFailure::fatal(FailureReason::TrustState, e.to_string()))?;
    let root = &trust.root.signed;
    root.verify_signed(RoleName::Release, &pending.release)?;
    let release = &pending.release.signed;
    let shown = file.display();
    if release.version != pending.to_version {
        return Err(UpdateFailure::fatal(
            FailureReason::Verification(manifests::Reason::ManifestMismatch),
            format!(
                "{shown}: the release is {}, not {}",
                release.version, pending.to_version
            ),
        ));
    }
    let artifact = release.artifact_for(&pending.platform).ok_or_else(|| {
        UpdateFailure::fatal(
            FailureReason::Verification(manifests::Reason::WrongPlatform),
            format!(
                "{shown}: the release has no artifact for {}",
                pending.platform
            ),
        )
    })?;
    manifests::verify_file(file, artifact)?;
    Ok(())
}

/// Ends a pending update: removes a staged file that was not installed, quarantines a
/// rolled-back version (before any worker starts again, so the restarted old version never
/// picks the same release up), queues the outcome for the worker to count and report, and
/// clears `pending.json`. Returns the attempt's duration in milliseconds.
pub fn finish_update(
    state: &StateDir,
    pending: &Pending,
    outcome: Outcome,
    reason: Option<FailureReason>,
) -> u64 {
    if outcome != Outcome::Success {
        let _ = std::fs::remove_file(&pending.staged_path);
    }
    if outcome == Outcome::RolledBack {
        handover::quarantine(state, &pending.to_version);
    }
    let record = outcome_record(pending, outcome, reason);
    if let Err(error) = state.push_outcome(&record, false) {
        tracing::error!(%error, "could not queue the outcome");
    }
    if let Err(error) = state.clear_pending() {
        tracing::error!(%error, "could not clear the pending update");
    }
    record.duration_ms
}

/// The outcome of `pending`'s attempt, decided now.
fn outcome_record(
    pending: &Pending,
    outcome: Outcome,
    reason: Option<FailureReason>,
) -> OutcomeRecord {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let duration_ms =
        u64::try_from(now_ms.saturating_sub(u128::try_from(pending.started_at_ms).unwrap_or(0)))
            .unwrap_or(u64::MAX);
    OutcomeRecord {
        correlation_id: pending.correlation_id.clone(),
        channel: pending.channel.clone(),
        from_version: pending.from_version.to_string(),
        to_version: pending.to_version.to_string(),
        outcome,
        reason: reason.map(FailureReason::label).unwrap_or_default(),
        duration_ms,
        at: Timestamp::now().to_string(),
    }
}
