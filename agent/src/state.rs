//! The agent's state directory. Every write is atomic (temp file in the same directory, fsync,
//! rename, fsync of the directory), so a `kill -9` at any instant leaves each file either old or
//! new, never torn. The files the supervisor and the worker exchange (`pending.json`,
//! `ready.json`, `outbox/`) and their types are the handover contract, in [`crate::handover`].
//!
//! | file | written by | what |
//! |---|---|---|
//! | `worker_id` | first start | the stable identity |
//! | `trust.json` | child | current root, accepted channel serial, quarantine |
//! | `pending.json` | child, then supervisor | a verified, staged update waiting for probation |
//! | `outbox/<id>.json` | supervisor | outcomes (success, rolled_back) the child must count and report |
//! | `counters.json` | child | `worker_update_*` counters, kept across restarts |
//! | `ready.json` | child | "I am ready": pid and version, for the probation judge |
//! | `update.lock` | supervisor / `update apply` | one updater per install |

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// fsyncs a directory, so a rename in it is durable (one implementation, the runner crate's).
pub use esup_runner::fs::sync_dir;
use manifests::{ExpirationEnforcement, Root, Signed, Timestamp, Version};

use crate::handover::{OutcomeRecord, Pending, Ready, OUTBOX_DIR, PENDING_FILE, READY_FILE};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds something unreadable.
    #[error("{path}: {problem}", path = path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The trusted root does not verify.
    #[error("trusted root: {0}")]
    Root(Box<manifests::Error>),
}

impl From<manifests::Error> for StateError {
    fn from(error: manifests::Error) -> Self {
        StateError::Root(Box::new(error))
    }
}

/// The trust state's file ([`TrustState`]).
pub const TRUST_FILE: &str = "trust.json";

type Result<T, E = StateError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    esup_runner::fs::write_atomic(path, bytes).map_err(|e| StateError::Io {
        path: e.path,
        source: e.source,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.to_owned(),
                problem: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// What the agent trusts and remembers between checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustState {
    /// The current trusted root (after following rotations).
    pub root: Signed<Root>,
    /// The channel the serial below belongs to.
    pub channel: String,
    /// Highest channel statement serial accepted.
    pub accepted_serial: Option<u64>,
    /// Hash of the statement accepted at that serial.
    pub accepted_statement_sha256: Option<String>,
    /// The signed `minimum_version` of that statement, acted on from the start (before the
    /// first check answers, or while the server is unreachable).
    #[serde(default)]
    pub accepted_minimum_version: Option<Version>,
    /// Highest release version ever offered and verified.
    pub highest_version_seen: Option<Version>,
    /// Versions that failed probation here.
    pub quarantined: BTreeSet<Version>,
}

impl TrustState {
    /// Forgets the accepted statement (serial, hash, minimum): the next genuine statement is
    /// accepted whatever its serial. Done when the channel changes, and when a new root changes
    /// the channel role's keys (`manifests::Root::channel_role_changed`): a key rotated out
    /// for good may have signed a serial that would otherwise freeze this agent forever.
    pub fn forget_statement(&mut self) {
        self.accepted_serial = None;
        self.accepted_statement_sha256 = None;
        self.accepted_minimum_version = None;
    }
}

/// Counters behind the `worker_update_*` metrics, kept across restarts and versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Update attempts started.
    pub attempts: u64,
    /// Updates that passed probation.
    pub successes: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Rollbacks by reason.
    pub rollbacks: BTreeMap<String, u64>,
    /// Deferrals past the maximum busy wait.
    pub deferred: u64,
    /// Artifact bytes downloaded.
    pub download_bytes: u64,
    /// The same bytes by kind: `full` (an artifact) or `delta` (a patch). Absent from the
    /// counters of older versions.
    #[serde(default)]
    pub bytes_by_kind: BTreeMap<String, u64>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(OUTBOX_DIR))
            .map_err(io(dir))?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// Opens an existing state directory without creating or changing anything (operator
    /// commands that only read): a missing directory is an error.
    pub fn existing(dir: &Path) -> Result<Self> {
        let metadata = fs::metadata(dir).map_err(io(dir))?;
        if !metadata.is_dir() {
            return Err(io(dir)(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    /// The stored trust state, if any, as it is on disk (no root file consulted, nothing saved).
    pub fn stored_trust(&self) -> Result<Option<TrustState>> {
        read_json(&self.file(TRUST_FILE))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The stable worker id, created once.
    pub fn worker_id(&self) -> Result<String> {
        let path = self.file("worker_id");
        match fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let host = fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(32)
            .collect();
        let id = format!(
            "{}{}{}",
            host,
            if host.is_empty() { "" } else { "-" },
            uuid::Uuid::new_v4().simple()
        );
        write_atomic(&path, format!("{id}\n").as_bytes())?;
        Ok(id)
    }

    /// The trust state: the stored one, or a fresh one from the installed root file.
    pub fn load_trust(&self, installed_root: &Path, channel: &str) -> Result<TrustState> {
        let now = Timestamp::now();
        if let Some(mut trust) = read_json::<TrustState>(&self.file(TRUST_FILE))? {
            trust.root.verify_self(now, ExpirationEnforcement::Unsafe)?;
            // An operator may install a newer root by hand: adopt it when it chains.
            if let Ok(installed) = Signed::<Root>::load(installed_root) {
                if installed.signed.version == trust.root.signed.version + 1 {
                    manifests::verify_rotation(&trust.root.signed, &installed)?;
                    if trust.root.signed.channel_role_changed(&installed.signed) {
                        trust.forget_statement();
                    }
                    trust.root = installed;
                }
            }
            if trust.channel != channel {
                trust.channel = channel.to_owned();
                trust.forget_statement();
            }
            return Ok(trust);
        }
        let root = Signed::<Root>::load(installed_root)?;
        root.verify_self(now, ExpirationEnforcement::Unsafe)?;
        let trust = TrustState {
            root,
            channel: channel.to_owned(),
            accepted_serial: None,
            accepted_statement_sha256: None,
            accepted_minimum_version: None,
            highest_version_seen: None,
            quarantined: BTreeSet::new(),
        };
        self.save_trust(&trust)?;
        Ok(trust)
    }

    /// Saves the trust state.
    pub fn save_trust(&self, trust: &TrustState) -> Result<()> {
        write_json(&self.file(TRUST_FILE), trust)
    }

    /// The pending update, if any.
    pub fn pending(&self) -> Result<Option<Pending>> {
        read_json(&self.file(PENDING_FILE))
    }

    /// Records a pending update.
    pub fn save_pending(&self, pending: &Pending) -> Result<()> {
        write_json(&self.file(PENDING_FILE), pending)
    }

    /// Forgets the pending update.
    pub fn clear_pending(&self) -> Result<()> {
        let path = self.file(PENDING_FILE);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(io(&path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Queues an outcome for the child to count and report. `already_counted` marks one whose
    /// metric the caller has counted itself; the mark is written first, so the outbox flusher
    /// can never see the outcome without it and count it twice.
    pub fn push_outcome(&self, outcome: &OutcomeRecord, already_counted: bool) -> Result<()> {
        let name: String = outcome
            .correlation_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let path = self
            .dir
            .join(OUTBOX_DIR)
            .join(format!("{name}-{}.json", outcome.outcome.as_str()));
        if already_counted {
            let mark = counted_mark(&path);
            write_atomic(&mark, b"")?;
        }
        write_json(&path, outcome)
    }

    /// Queued outcomes, with their files (remove a file once its outcome is handled).
    pub fn outcomes(&self) -> Result<Vec<(PathBuf, OutcomeRecord)>> {
        let dir = self.dir.join(OUTBOX_DIR);
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(outcome) = read_json::<OutcomeRecord>(&path)? {
                    found.push((path, outcome));
                }
            }
        }
        found.sort_by(|a, b| a.1.at.cmp(&b.1.at));
        Ok(found)
    }

    /// The persisted counters.
    pub fn counters(&self) -> Result<Counters> {
        Ok(read_json(&self.file("counters.json"))?.unwrap_or_default())
    }

    /// Saves the counters.
    pub fn save_counters(&self, counters: &Counters) -> Result<()> {
        write_json(&self.file("counters.json"), counters)
    }

    /// Announces readiness.
    pub fn write_ready(&self, ready: &Ready) -> Result<()> {
        write_json(&self.file(READY_FILE), ready)
    }

    /// The readiness announcement, if any.
    pub fn ready(&self) -> Result<Option<Ready>> {
        read_json(&self.file(READY_FILE))
    }

    /// Forgets any readiness announcement (before starting a child).
    pub fn clear_ready(&self) -> Result<()> {
        let path = self.file(READY_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Takes the install's update lock without waiting: `None` when another process holds it.
    pub fn try_lock(&self) -> Result<Option<UpdateLock>> {
        let path = self.file("update.lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io(&path))?;
                let _ = writeln!(file, "{}", std::process::id());
                Ok(Some(UpdateLock { _file: file }))
            }
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }

    /// The pid written by the current lock holder, for messages.
    pub fn lock_holder(&self) -> Option<String> {
        fs::read_to_string(self.file("update.lock"))
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

/// Held while this process is the install's updater; released when dropped (or the process dies).
#[derive(Debug)]
pub struct UpdateLock {
    _file: File,
}

/// The file marking an outbox entry as counted (kept until the entry is reported).
pub fn counted_mark(outcome_file: &Path) -> PathBuf {
    outcome_file.with_extension("counted")
}
