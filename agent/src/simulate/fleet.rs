//! What the simulated agents share: the fleet's per-agent records (filled by each agent's
//! updater observer and supervisor loop, read by the controller and the summary) and the
//! settings common to every agent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use manifests::Version;
use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::Outcome;
use crate::updater::UpdateObserver;

/// What happened to one agent, for the figures.
#[derive(Debug)]
pub(super) struct Record {
    /// The committed (running, past probation) version.
    pub(super) version: Version,
    pub(super) polled: bool,
    /// Held until the first poll (bounded start-up concurrency).
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) polls: u64,
    pub(super) polls_changed: u64,
    pub(super) check_failures: u64,
    pub(super) attempts: Vec<(Version, Instant)>,
    pub(super) attempt_failures: Vec<(Version, String, Instant)>,
    pub(super) staged: Vec<(Version, Instant)>,
    /// Verdicts: (version, outcome, reason, when).
    pub(super) verdicts: Vec<(Version, Outcome, String, Instant)>,
    /// Version being attempted (from the download's start to the probation's verdict).
    pub(super) in_flight: Option<Version>,
    pub(super) saw_halted: Option<Instant>,
    /// Why this agent stopped before the end, if it did.
    pub(super) stopped: Option<String>,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) channel: String,
    pub(super) worker_id: String,
    pub(super) dir: PathBuf,
    pub(super) record: Mutex<Record>,
}

impl Slot {
    pub(super) fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Shared by every agent and the controller.
#[derive(Debug)]
pub(super) struct Fleet {
    pub(super) began: Instant,
    /// Start of the stimulus.
    pub(super) t0: OnceLock<Instant>,
    pub(super) agents: Vec<Slot>,
    pub(super) halt_channel: Option<String>,
    /// First time an agent of the halt channel accepted a halted statement.
    pub(super) first_halt: OnceLock<Instant>,
    pub(super) ready: AtomicUsize,
    pub(super) changed: Notify,
}

/// One agent's observer of its updater.
#[derive(Debug)]
pub(super) struct Observer {
    pub(super) fleet: Arc<Fleet>,
    pub(super) index: usize,
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
pub(super) struct Sim {
    pub(super) fleet: Arc<Fleet>,
    pub(super) client: UpdateClient,
    pub(super) configs: BTreeMap<String, AgentConfig>,
    pub(super) platform: String,
    pub(super) probation: Duration,
    pub(super) fail: BTreeSet<Version>,
}
