//! `worker-agent update status`: what the local state directory says, read only. No server is
//! asked and no file is written (not even the update lock, whose holder is read from
//! `/proc/locks`), so it needs no server flags, and a missing state directory is an error,
//! never created. The channel shown is the one the agent follows (its `trust.json`), not a flag.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::child::VERSION;
use crate::state::StateDir;

/// `update status` options: the state directory, and the install path to show.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The agent's state directory (read only; never created).
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: PathBuf,
    /// The install path to show (default: this executable).
    #[arg(long, env = "WORKER_AGENT_INSTALL_PATH")]
    pub install_path: Option<PathBuf>,
    /// Accepted for compatibility with the other `update` commands and ignored: status asks
    /// no server (`--update-server`, `--token`, `--root`, `--channel`).
    #[arg(long = "update-server", hide = true)]
    pub ignored_update_server: Option<String>,
    /// See `ignored_update_server`.
    #[arg(long = "token", hide = true)]
    pub ignored_token: Option<String>,
    /// See `ignored_update_server`.
    #[arg(long = "root", hide = true)]
    pub ignored_root: Option<PathBuf>,
    /// See `ignored_update_server`.
    #[arg(long = "channel", hide = true)]
    pub ignored_channel: Option<String>,
}

/// Prints the local update state as JSON; 1 when the state directory cannot be read.
pub fn status(args: &StatusArgs) -> i32 {
    match report(args) {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            0
        }
        Err(message) => {
            eprintln!("worker-agent: error: {message}");
            1
        }
    }
}

fn report(args: &StatusArgs) -> Result<serde_json::Value, String> {
    let state = StateDir::existing(&args.state_dir)
        .map_err(|e| format!("{e} (STATE_DIR; update status reads it and never creates it)"))?;
    let trust = state.stored_trust().map_err(|e| e.to_string())?;
    let pending = state.pending().map_err(|e| e.to_string())?;
    let counters = state.counters().map_err(|e| e.to_string())?;
    let worker_id = std::fs::read_to_string(state.path().join("worker_id"))
        .ok()
        .map(|id| id.trim().to_owned());
    let install_path = match &args.install_path {
        Some(path) => std::fs::canonicalize(path).ok(),
        None => std::env::current_exe().and_then(std::fs::canonicalize).ok(),
    };
    Ok(serde_json::json!({
        "version": VERSION,
        "worker_id": worker_id,
        "install_path": install_path,
        "channel": trust.as_ref().map(|t| t.channel.clone()),
        "root_version": trust.as_ref().map(|t| t.root.signed.version),
        "accepted_serial": trust.as_ref().and_then(|t| t.accepted_serial),
        "highest_version_seen": trust.as_ref().and_then(|t| t.highest_version_seen.as_ref().map(ToString::to_string)),
        "quarantined": trust.as_ref().map(|t| t.quarantined.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "pending": pending.map(|p| serde_json::json!({"to_version": p.to_version.to_string(), "staged": p.staged_path, "correlation_id": p.correlation_id})),
        "lock_holder": lock_holder(&state.path().join("update.lock")),
        "counters": counters,
    }))
}

/// The pid holding `lock` (an `flock`), from `/proc/locks`, without touching the file.
fn lock_holder(lock: &Path) -> Option<u32> {
    let metadata = std::fs::metadata(lock).ok()?;
    let inode = format!(":{}", metadata.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`: kind, pid, major:minor:inode.
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_ours =
            fields.get(1) == Some(&"FLOCK") && fields.get(5).is_some_and(|id| id.ends_with(&inode));
        is_ours.then(|| fields.get(4)?.parse().ok()).flatten()
    })
}
