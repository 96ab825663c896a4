//! The child's update loop: poll (or long-poll) the server, follow root rotations, decide with
//! `manifests`, download and verify into the install directory, stage, wait for running tasks,
//! then hand over to the supervisor (exit code [`handover::EXIT_STAGED`]) for probation.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifests::{Decision, ExpirationEnforcement, LocalState, Timestamp, UpdateCheck, Version};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{Handshake, Latest, Poll, UpdateClient};
use crate::config::AgentConfig;
use crate::download::{download, DownloadOptions};
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::{self, flush_outbox, spawn_outbox_flusher, Outcome, OutcomeRecord, Pending};
use crate::metrics::Telemetry;
use crate::minimum::MinimumGuard;
use crate::retry::{self, Backoff, Reported, SourceVerdicts};
use crate::state::{StateDir, TrustState};
use crate::tasks::TaskGate;

mod delta;
mod recheck;
mod sources;

/// What the update loop ended with.
#[derive(Debug)]
pub enum LoopEnd {
    /// Shutdown requested.
    Shutdown,
    /// A verified update is staged and tasks are drained: exit with [`handover::EXIT_STAGED`].
    Staged,
}

/// Watches an update loop: what it polled, accepted and attempted. The agent runs without one;
/// the fleet simulator (`worker-agent simulate`) counts its agents' progress with it. Every
/// method defaults to doing nothing, and none can change what the loop does.
pub trait UpdateObserver: Send + Sync + std::fmt::Debug {
    /// A poll of `/latest` answered (`changed`: a 200 rather than a 304).
    fn polled(&self, changed: bool) {
        let _ = changed;
    }
    /// A poll or its decision failed (the loop pauses, then polls again).
    fn check_failed(&self, failure: &UpdateFailure) {
        let _ = failure;
    }
    /// A genuine channel statement was accepted (whether it leads to an install or not).
    fn statement_accepted(&self, statement: &manifests::ChannelStatement) {
        let _ = statement;
    }
    /// An update attempt (download, verify, stage) of `version` started.
    fn attempt_started(&self, version: &Version) {
        let _ = version;
    }
    /// That attempt ended without staging the update (`reason`: the failure, or `busy`).
    fn attempt_failed(&self, version: &Version, reason: FailureReason) {
        let _ = (version, reason);
    }
}

/// The child's updater.
#[derive(Debug)]
pub struct Updater {
    /// Configuration.
    pub config: AgentConfig,
    /// The worker it updates (state directory, server client, metrics, identity, version).
    pub session: WorkerSession,
    /// The task gate.
    pub gate: TaskGate,
    /// The install path (resolved by the supervisor).
    pub install_path: PathBuf,
    trust: TrustState,
    etag: Option<String>,
    latest: Option<Latest>,
    poll_interval: Duration,
    /// What was reported already: one report per release and reason.
    reported: Reported,
    /// Artifact sources that sent bad bytes (hash, size, disk verdicts): avoided for a while,
    /// with backoff; the same bytes may come from another source meanwhile.
    condemned: SourceVerdicts,
    /// The pause after a refused channel answer (doubling while refusals go on).
    rejections: Backoff,
    /// The signed minimum version, applied to the task gate.
    minimum: MinimumGuard,
    observer: Option<Arc<dyn UpdateObserver>>,
}

/// A worker's side of the update protocol, the same for the real worker and the fleet
/// simulator's: registration, the outbox flusher (counting and reporting what the supervisor
/// decided) and the updater's construction.
#[derive(Debug, Clone)]
pub struct WorkerSession {
    /// The state directory.
    pub state: StateDir,
    /// The update server's client.
    pub client: UpdateClient,
    /// The worker's metrics.
    pub telemetry: Arc<Telemetry>,
    /// The worker's stable id.
    pub worker_id: String,
    /// The version this worker runs.
    pub version: Version,
    /// Its platform (target triple).
    pub platform: String,
}

/// The outbox flusher of a [`WorkerSession`], stopped by [`WorkerSession::finish`].
#[derive(Debug)]
pub struct Reporting {
    stop: CancellationToken,
    flusher: tokio::task::JoinHandle<()>,
}

impl WorkerSession {
    /// Registers with the update server, retrying with backoff (500 ms doubling to 30 s) until
    /// it answers; `None` when `shutdown` comes first. `on_failure` sees each failed attempt.
    pub async fn register(
        &self,
        channel: &str,
        shutdown: &CancellationToken,
        on_failure: impl Fn(&UpdateFailure),
    ) -> Option<Handshake> {
        // The task types a worker registers with: its runner layer's one list.
        let task_types = esup_runner::TaskType::ALL.map(|t| t.as_str().to_owned());
        let version = self.version.to_string();
        let mut backoff = Duration::from_millis(500);
        loop {
            match self
                .client
                .register(
                    &self.worker_id,
                    &version,
                    &self.platform,
                    channel,
                    &task_types,
                )
                .await
            {
                Ok(handshake) => return Some(handshake),
                Err(failure) => {
                    tracing::warn!(reason = %failure.reason, error = %failure.message, "registration with the update server failed; retrying");
                    on_failure(&failure);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Counts (and quarantines) what the supervisor decided, before the first update check,
    /// then keeps doing so in the background (an outcome is reported promptly whatever the
    /// update loop is doing, e.g. sitting in a long poll) until `stop` or [`Self::finish`].
    pub async fn start_reporting(&self, stop: CancellationToken) -> Reporting {
        flush_outbox(&self.state, &self.client, &self.telemetry, &self.worker_id).await;
        let stop = stop.child_token();
        let flusher = spawn_outbox_flusher(
            self.state.clone(),
            self.client.clone(),
            self.telemetry.clone(),
            self.worker_id.clone(),
            stop.clone(),
        );
        Reporting { stop, flusher }
    }

    /// In probation, waits until the supervisor commits this worker's version
    /// ([`handover::wait_for_commit`]); at once otherwise. `false` when `shutdown` comes first.
    pub async fn wait_for_commit(&self, in_probation: bool, shutdown: &CancellationToken) -> bool {
        !in_probation || handover::wait_for_commit(&self.state, &self.version, shutdown).await
    }

    /// The update loop of this worker, polling at the server's suggested interval at first.
    pub fn updater(
        &self,
        config: &AgentConfig,
        gate: TaskGate,
        install_path: PathBuf,
        handshake: &Handshake,
    ) -> Result<Updater, UpdateFailure> {
        Updater::new(
            config.clone(),
            self.clone(),
            gate,
            install_path,
            Duration::from_secs(handshake.poll_interval_s.max(1)),
        )
    }

    /// Stops the background reporting, reports what is left, and persists the counters.
    pub async fn finish(&self, reporting: Reporting) {
        reporting.stop.cancel();
        let _ = reporting.flusher.await;
        flush_outbox(&self.state, &self.client, &self.telemetry, &self.worker_id).await;
        self.telemetry.flush();
    }
}

impl Updater {
    /// An updater of `session`'s worker, starting from the persisted trust state.
    pub fn new(
        config: AgentConfig,
        session: WorkerSession,
        gate: TaskGate,
        install_path: PathBuf,
        poll_interval: Duration,
    ) -> Result<Self, UpdateFailure> {
        let trust = session
            .state
            .load_trust(&config.root, &config.channel)
            .map_err(|e| UpdateFailure::fatal(FailureReason::TrustState, e.to_string()))?;
        let mut minimum = MinimumGuard::new(
            session.version.clone(),
            gate.clone(),
            config.serve_below_minimum,
        );
        if let Some(signed) = &trust.accepted_minimum_version {
            minimum.apply(signed);
        }
        let backoff = Duration::from_secs(config.retry_backoff_secs);
        Ok(Updater {
            config,
            session,
            gate,
            install_path,
            trust,
            etag: None,
            latest: None,
            poll_interval,
            reported: Reported::default(),
            condemned: SourceVerdicts::new(backoff),
            rejections: Backoff::new(backoff),
            minimum,
            observer: None,
        })
    }

    /// The same updater, reporting what it does to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn UpdateObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, event: impl FnOnce(&dyn UpdateObserver)) {
        if let Some(observer) = &self.observer {
            event(observer.as_ref());
        }
    }

    /// One line describing the last decision's inputs, for `update check`.
    pub fn describe(&self) -> String {
        match self
            .latest
            .as_ref()
            .and_then(|l| l.channel.as_ref().zip(l.release.as_ref()))
        {
            Some((channel, release)) => format!(
                "running {}; channel {} serial {} offers {} at {}%{}; accepted serial now {}",
                self.session.version,
                channel.signed.channel,
                channel.signed.serial,
                release.signed.version,
                channel.signed.rollout.percent,
                if channel.signed.halted {
                    " (halted)"
                } else {
                    ""
                },
                self.trust
                    .accepted_serial
                    .map_or_else(|| "none".to_owned(), |s| s.to_string())
            ),
            None => format!(
                "running {}; channel {} offers nothing yet",
                self.session.version, self.config.channel
            ),
        }
    }

    /// Runs until shutdown or until an update is staged.
    pub async fn run(mut self, shutdown: CancellationToken) -> LoopEnd {
        let mut first = true;
        loop {
            if shutdown.is_cancelled() {
                return LoopEnd::Shutdown;
            }
            // After a refused answer, wait out the backoff before asking again (a hostile
            // server answering every long poll at once must not get a busy loop).
            if let Some(pause) = self.rejections.remaining(Instant::now()) {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return LoopEnd::Shutdown,
                }
            }
            if !first && !self.config.long_poll {
                // Full jitter: a fleet restarted together does not poll together.
                let base = self
                    .config
                    .poll_interval_secs
                    .map_or(self.poll_interval, Duration::from_secs);
                let jitter = rand::rng().random_range(0..=base.as_millis().max(1) as u64);
                let pause = if self.config.force_update {
                    Duration::ZERO
                } else {
                    Duration::from_millis(jitter)
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return LoopEnd::Shutdown,
                }
            }
            first = false;
            let outcome = tokio::select! {
                outcome = self.check_once() => outcome,
                () = shutdown.cancelled() => return LoopEnd::Shutdown,
            };
            if outcome.is_ok() {
                // A forced update is one attempt (the check that reached the server and what it
                // decided); after it, the agent polls at the normal cadence, unforced.
                self.config.force_update = false;
            }
            match outcome {
                Ok(true) => return LoopEnd::Staged,
                Ok(false) => {}
                Err(failure) => {
                    tracing::warn!(reason = %failure.reason, error = %failure.message, "update check failed");
                    self.observe(|o| o.check_failed(&failure));
                    let pause = Duration::from_secs(5).min(self.poll_interval);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return LoopEnd::Shutdown,
                    }
                }
            }
        }
    }

    /// One poll and, when warranted, one update attempt. `Ok(true)` when an update is staged.
    pub async fn check_once(&mut self) -> Result<bool, UpdateFailure> {
        let started = Instant::now();
        let wait = (self.config.long_poll && self.etag.is_some() && !self.config.force_update)
            .then(|| {
                self.config
                    .poll_interval_secs
                    .map_or(self.poll_interval, Duration::from_secs)
            });
        let poll = self
            .fetch_latest(self.etag.clone(), wait)
            .await
            .inspect_err(|failure| {
                // An oversized answer is a verdict on what the server sent, counted (once) like
                // a refused document; transport trouble is only logged by the loop.
                if failure.reason == FailureReason::TooLarge {
                    self.reject(failure, None);
                }
            })?;
        self.observe(|o| o.polled(matches!(poll, Poll::Changed { .. })));
        #[allow(clippy::cast_precision_loss)]
        self.session
            .telemetry
            .last_check
            .set(Timestamp::now().unix() as f64);
        // What to go back to if this answer is refused.
        let cached = (self.poll_interval, self.latest.clone());
        let refusals = self.rejections.failures();
        let changed = matches!(poll, Poll::Changed { .. });
        if let Poll::Changed { latest, etag } = poll {
            self.poll_interval = Duration::from_secs(latest.poll_interval_s.clamp(1, 3600));
            self.etag = etag;
            self.latest = Some(*latest);
        }
        let Some(latest) = self.latest.clone() else {
            return Ok(false);
        };
        self.session
            .telemetry
            .durations
            .with_label_values(&["check"])
            .observe(started.elapsed().as_secs_f64());
        let applied = self.decide_and_apply(latest).await;
        if changed && self.rejections.failures() > refusals {
            // An answer that failed verification never becomes the cached state: its ETag
            // would get 304s from an honest server for the genuine statement of the same
            // serial, which would then never be evaluated. The next poll fetches it whole.
            self.etag = None;
            (self.poll_interval, self.latest) = cached;
        }
        applied
    }

    async fn decide_and_apply(&mut self, latest: Latest) -> Result<bool, UpdateFailure> {
        if let Err(failure) = self.follow_roots(latest.root_version).await {
            self.reject(&failure, None);
            return Ok(false);
        }
        let (Some(channel), Some(release)) = (&latest.channel, &latest.release) else {
            return Ok(false);
        };
        let decision = self.decide(&latest, channel, release);
        let (plan, statement) = match decision {
            Decision::Reject(error) => {
                let to = release.signed.version.to_string();
                self.reject(&UpdateFailure::from(error), Some(&to));
                return Ok(false);
            }
            Decision::NothingToDo { why, statement } => {
                self.accept(&statement, &release.signed.version);
                self.observe(|o| o.statement_accepted(&channel.signed));
                tracing::debug!(?why, "nothing to do");
                return Ok(false);
            }
            Decision::Install { plan, statement } => (plan, statement),
        };
        self.accept(&statement, &release.signed.version);
        self.observe(|o| o.statement_accepted(&channel.signed));
        if !self.config.auto_update() {
            tracing::info!(version = %plan.version, "update available; automatic updates are off");
            return Ok(false);
        }
        if let Some(wait) = self.sources_waiting(&plan) {
            tracing::debug!(version = %plan.version, retry_in_secs = wait.as_secs(), "every source of this artifact sent bad bytes lately; trying again after the backoff");
            return Ok(false);
        }
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("update", correlation_id = %correlation_id, from = %self.session.version, to = %plan.version);
        self.attempt(plan, release.clone(), statement.urgent, correlation_id)
            .instrument(span)
            .await
    }

    /// What `manifests` decides on `latest` (its `channel` and `release`) for this worker now.
    fn decide(
        &self,
        latest: &Latest,
        channel: &manifests::Signed<manifests::ChannelStatement>,
        release: &manifests::Signed<manifests::Release>,
    ) -> Decision {
        let local = LocalState {
            product: manifests::PRODUCT.to_owned(),
            platform: self.session.platform.clone(),
            worker_id: self.session.worker_id.clone(),
            channel: self.config.channel.clone(),
            current_version: self.session.version.clone(),
            accepted_serial: self.trust.accepted_serial,
            accepted_statement_sha256: self.trust.accepted_statement_sha256.clone(),
            quarantined: self.current_quarantine(),
        };
        let root = self.trust.root.signed.clone();
        UpdateCheck {
            root: &root,
            channel,
            release,
            rollback: latest.rollback.as_ref(),
            ignore_cohort: self.config.force_update,
        }
        .decide(&local, Timestamp::now())
    }

    /// `/latest` of this worker's channel, sending `etag`, held up to `wait` (a long poll).
    async fn fetch_latest(
        &self,
        etag: Option<String>,
        wait: Option<Duration>,
    ) -> Result<Poll, UpdateFailure> {
        self.session
            .client
            .latest(
                &self.config.channel,
                &self.session.platform,
                &self.session.version.to_string(),
                &self.session.worker_id,
                etag.as_deref(),
                wait,
            )
            .await
    }

    fn current_quarantine(&self) -> BTreeSet<Version> {
        // The supervisor's outcomes may have added to it since we loaded it.
        self.session
            .state
            .load_trust(&self.config.root, &self.config.channel)
            .map(|t| t.quarantined)
            .unwrap_or_else(|_| self.trust.quarantined.clone())
    }

    fn accept(&mut self, statement: &manifests::AcceptedStatement, offered: &Version) {
        self.rejections.succeeded();
        #[allow(clippy::cast_precision_loss)]
        self.session
            .telemetry
            .manifest_expiry
            .set(statement.expires.unix() as f64);
        let mut trust = self
            .session
            .state
            .load_trust(&self.config.root, &self.config.channel)
            .unwrap_or_else(|_| self.trust.clone());
        self.minimum.apply(&statement.minimum_version);
        let changed = trust.accepted_serial != Some(statement.serial)
            || trust.accepted_minimum_version.as_ref() != Some(&statement.minimum_version)
            || trust
                .highest_version_seen
                .as_ref()
                .is_none_or(|v| v < offered);
        trust.accepted_serial = Some(statement.serial);
        trust.accepted_statement_sha256 = Some(statement.sha256.clone());
        trust.accepted_minimum_version = Some(statement.minimum_version.clone());
        if trust
            .highest_version_seen
            .as_ref()
            .is_none_or(|v| v < offered)
        {
            trust.highest_version_seen = Some(offered.clone());
        }
        if changed {
            if let Err(error) = self.session.state.save_trust(&trust) {
                tracing::error!(%error, "could not persist the trust state");
            }
        }
        self.trust = trust;
    }

    /// Counts, logs and reports a rejection, once per release and reason (not per statement: a
    /// hostile server can mint serials forever). An answer that failed verification is also
    /// counted at every retry and backs the loop off ([`retry::answer_failed`]); a genuine
    /// answer this worker cannot act on (another platform, a downgrade) is counted once.
    fn reject(&mut self, failure: &UpdateFailure, to_version: Option<&str>) {
        let first = self
            .reported
            .insert(format!("{to_version:?}/{}", failure.reason));
        let failed = retry::answer_failed(failure.reason);
        if !failed && !first {
            return;
        }
        self.session.telemetry.failure(&failure.reason.label());
        let pause = failed.then(|| self.rejections.failed(Instant::now()));
        tracing::warn!(
            reason = %failure.reason,
            error = %failure.message,
            to_version = to_version.unwrap_or("none"),
            source = self.session.client.base(),
            next_retry_in_secs = pause.map(|p| p.as_secs()),
            reported = first,
            "update rejected; nothing touched"
        );
        if !first {
            return;
        }
        if let Some(to) = to_version {
            self.queue_outcome(
                &uuid::Uuid::new_v4().to_string(),
                to,
                Outcome::Failure,
                failure.reason,
                0,
            );
        }
    }

    fn queue_outcome(
        &self,
        correlation_id: &str,
        to: &str,
        outcome: Outcome,
        reason: FailureReason,
        duration_ms: u64,
    ) {
        let record = OutcomeRecord {
            correlation_id: correlation_id.to_owned(),
            channel: self.config.channel.clone(),
            from_version: self.session.version.to_string(),
            to_version: to.to_owned(),
            outcome,
            reason: reason.label(),
            duration_ms,
            at: Timestamp::now().to_string(),
        };
        if outcome == Outcome::Failure && !retry::outbox_has_room(&self.session.state) {
            // Bounded: a server that takes no reports cannot fill the disk. Still counted.
            tracing::warn!(
                limit = retry::OUTBOX_LIMIT,
                to_version = to,
                reason = %reason,
                "outbox full; this failure report is dropped (counted on /metrics only)"
            );
            return;
        }
        // Counted by the outbox flusher, except failures, which the caller counted already.
        if let Err(error) = self
            .session
            .state
            .push_outcome(&record, outcome == Outcome::Failure)
        {
            tracing::error!(%error, "could not queue the outcome report");
        }
    }

    async fn follow_roots(&mut self, server_version: u64) -> Result<(), UpdateFailure> {
        let mut current = self.trust.root.clone();
        if server_version <= current.signed.version {
            return Ok(());
        }
        let mut channel_role_changed = false;
        while current.signed.version < server_version {
            let next = self.session.client.root(current.signed.version + 1).await?;
            manifests::verify_rotation(&current.signed, &next)?;
            tracing::info!(
                from = current.signed.version,
                to = next.signed.version,
                "root rotated"
            );
            channel_role_changed |= current.signed.channel_role_changed(&next.signed);
            current = next;
        }
        current
            .signed
            .check_expiry(Timestamp::now(), ExpirationEnforcement::Safe)?;
        let mut trust = self.trust.clone();
        trust.root = current;
        if channel_role_changed {
            tracing::info!(
                root = trust.root.signed.version,
                forgotten_serial = trust.accepted_serial,
                "the new root changes the channel keys; the accepted channel serial is reset"
            );
            trust.forget_statement();
        }
        self.session
            .state
            .save_trust(&trust)
            .map_err(|e| UpdateFailure::fatal(FailureReason::Io, e.to_string()))?;
        self.trust = trust;
        Ok(())
    }

    async fn attempt(
        &mut self,
        plan: manifests::InstallPlan,
        release: manifests::Signed<manifests::Release>,
        urgent: bool,
        correlation_id: String,
    ) -> Result<bool, UpdateFailure> {
        let started = Instant::now();
        let started_at_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(0);
        self.session.telemetry.attempt();
        self.observe(|o| o.attempt_started(&plan.version));
        tracing::info!(version = %plan.version, size = plan.artifact.size, rollback = plan.is_rollback, "update attempt started");
        let to = plan.version.to_string();
        // A signed patch from the installed binary, when there is one; any failure of it is
        // counted (`delta_failed`) and this same attempt downloads the full artifact.
        let staged = match self.try_delta(&plan, &correlation_id, started).await {
            Some(staged) => Ok(staged),
            None => {
                self.download_from_sources(&plan, &correlation_id, started)
                    .await
            }
        };
        match staged {
            Ok(staged) => {
                self.session
                    .telemetry
                    .durations
                    .with_label_values(&["download"])
                    .observe(started.elapsed().as_secs_f64());
                let pending = Pending {
                    correlation_id: correlation_id.clone(),
                    channel: self.config.channel.clone(),
                    from_version: self.session.version.clone(),
                    to_version: plan.version.clone(),
                    staged_path: staged,
                    install_path: self.install_path.clone(),
                    release,
                    platform: self.session.platform.clone(),
                    is_rollback: plan.is_rollback,
                    started_at_ms,
                    probation_attempts: 0,
                };
                if !self.wait_until_idle(urgent, &correlation_id, &to).await {
                    let _ = std::fs::remove_file(&pending.staged_path);
                    self.observe(|o| o.attempt_failed(&plan.version, FailureReason::Busy));
                    return Ok(false);
                }
                if !self.still_offered(&plan).await {
                    // Not a failure of this release: the next poll decides on the new state.
                    let _ = std::fs::remove_file(&pending.staged_path);
                    self.gate.undrain();
                    return Ok(false);
                }
                self.session
                    .state
                    .save_pending(&pending)
                    .map_err(|e| UpdateFailure::fatal(FailureReason::Io, e.to_string()))?;
                tracing::info!(
                    staged = %pending.staged_path.display(),
                    download_verify_stage_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    peak_rss_kib = peak_rss_kib(),
                    "update staged; handing over to the supervisor for probation"
                );
                Ok(true)
            }
            Err(failure) => {
                tracing::warn!(reason = %failure.reason, error = %failure.message, retryable = failure.retryable, "update attempt failed; the running binary is untouched");
                // Counted and reported (once per release and reason) source by source.
                self.observe(|o| o.attempt_failed(&plan.version, failure.reason));
                Ok(false)
            }
        }
    }

    /// Never swap while a task runs: refuse new tasks, wait for the running ones. Past the
    /// maximum deferral, a forced or urgent update keeps waiting (it never cuts a task); any
    /// other gives up for now, accepts tasks again and reports `deferred`.
    async fn wait_until_idle(&mut self, urgent: bool, correlation_id: &str, to: &str) -> bool {
        self.gate.drain();
        if self.gate.running() == 0 {
            return true;
        }
        tracing::info!(
            running = self.gate.running(),
            "waiting for running tasks before updating; new tasks are refused meanwhile"
        );
        if self
            .gate
            .wait_idle(Duration::from_secs(self.config.max_deferral_secs))
            .await
        {
            return true;
        }
        if urgent || self.config.force_update {
            tracing::warn!(
                running = self.gate.running(),
                urgent,
                forced = self.config.force_update,
                "tasks still running after the maximum deferral; this update keeps waiting for them"
            );
            while !self.gate.wait_idle(Duration::from_secs(3600)).await {}
            return true;
        }
        self.gate.undrain();
        tracing::warn!("update deferred: tasks still running after the maximum deferral");
        let record = OutcomeRecord {
            correlation_id: correlation_id.to_owned(),
            channel: self.config.channel.clone(),
            from_version: self.session.version.to_string(),
            to_version: to.to_owned(),
            outcome: Outcome::Deferred,
            reason: FailureReason::Busy.label(),
            duration_ms: self.config.max_deferral_secs * 1000,
            at: Timestamp::now().to_string(),
        };
        if let Err(error) = self.session.state.push_outcome(&record, false) {
            tracing::error!(%error, "could not queue the deferral report");
        }
        false
    }

    async fn download_and_stage(
        &self,
        plan: &manifests::InstallPlan,
        url: &str,
    ) -> Result<PathBuf, UpdateFailure> {
        let artifact = &plan.artifact;
        let part = handover::part_path(&self.install_path, &artifact.sha256);
        let staged = handover::staged_path(&self.install_path, &plan.version, &artifact.sha256);
        let options = self.download_options();
        let telemetry = self.session.telemetry.clone();
        let state_dir = self.session.state.path().to_owned();
        let first_chunk = std::sync::atomic::AtomicBool::new(false);
        let on_bytes = move |n: u64| {
            telemetry.downloaded("full", n);
            if !first_chunk.swap(true, std::sync::atomic::Ordering::SeqCst) {
                crate::failpoint::hit_blocking("downloading", &state_dir);
            }
        };
        download(
            self.session.client.http(),
            url,
            // Only the update server gets the worker token, never a mirror.
            self.session.client.token_for(url),
            artifact,
            &part,
            &options,
            &on_bytes,
        )
        .await?;
        self.session.telemetry.flush();
        crate::failpoint::hit("verifying", self.session.state.path()).await;
        self.stage(&part, &staged)?;
        Ok(staged)
    }

    /// Timeouts, rate floor and retries of every download (artifacts and patches).
    fn download_options(&self) -> DownloadOptions {
        DownloadOptions {
            attempts: self.config.download_attempts,
            read_timeout: Duration::from_secs(self.config.read_timeout_secs),
            min_rate: self.config.min_rate_bytes,
            rate_window: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
        }
    }

    /// Moves the verified file `part` to `staged`: the running binary's mode, one rename, the
    /// directory fsync'd.
    fn stage(&self, part: &std::path::Path, staged: &std::path::Path) -> Result<(), UpdateFailure> {
        let dir = handover::install_dir(&self.install_path);
        // Same mode as the running binary, then into its verified name in one rename.
        let mode = std::fs::metadata(&self.install_path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))
            .unwrap_or(0o755);
        std::fs::set_permissions(
            part,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
        .map_err(|e| UpdateFailure::io("setting the mode of", part, &e))?;
        std::fs::rename(part, staged)
            .map_err(|e| UpdateFailure::io("staging the download as", staged, &e))?;
        crate::state::sync_dir(dir)
            .map_err(|e| UpdateFailure::io("syncing the install directory", dir, &e))?;
        Ok(())
    }
}

/// This process's peak resident set size (VmHWM), in KiB: downloads stream, so it must not grow
/// with the artifact (`scripts/bench-update.sh` reads it from the log).
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The updater's decisions given a channel statement, a release and the local state, with real
/// signed documents (made with the format crate's key generation and signing) and the artifact
/// served over HTTP by a local server, as the update server would.
#[cfg(test)]
mod tests;
