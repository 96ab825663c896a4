//! The entry points behind the command line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use manifests::Version;

use crate::child::VERSION;
use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::metrics::Telemetry;
use crate::state::StateDir;
use crate::supervisor::{resolve_install_path, Supervisor};
use crate::tasks::TaskGate;
use crate::updater::{Updater, WorkerSession};

fn fail(message: &str) -> i32 {
    eprintln!("worker-agent: error: {message}");
    1
}

/// `worker-agent run` as the supervisor.
pub async fn supervise(config: AgentConfig) -> i32 {
    // An unusable CA bundle is a configuration error: refuse once, naming the file (78, which
    // the unit does not restart), instead of a worker that fails every request.
    if let Some(error) = config
        .ca_bundle
        .as_deref()
        .and_then(|path| crate::tls::load_bundle(path).err())
    {
        tracing::error!(%error, event = "config_refused", "unusable --ca-bundle");
        eprintln!("worker-agent: error: {error}");
        return crate::handover::EXIT_REFUSED;
    }
    let install_path = match resolve_install_path(&config) {
        Ok(path) => path,
        Err(error) => return fail(&format!("cannot resolve the install path: {error}")),
    };
    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(error) => return fail(&error.to_string()),
    };
    let lock = match state.try_lock() {
        Ok(lock) => lock,
        Err(error) => return fail(&error.to_string()),
    };
    if lock.is_none() {
        let holder = state.lock_holder().unwrap_or_default();
        tracing::warn!(holder = %holder, "another worker-agent holds the update lock of this install; this instance will not update");
        eprintln!(
            "worker-agent: another updater (pid {holder}) holds {}; this instance runs without updating",
            state.path().join("update.lock").display()
        );
    }
    tracing::info!(install_path = %install_path.display(), updater = lock.is_some(), "supervisor starting");
    let child_args: Vec<_> = std::env::args_os().skip(1).collect();
    let code = Supervisor::new(config, state, install_path, child_args, lock.is_some())
        .run()
        .await;
    drop(lock);
    code
}

async fn one_shot_updater(config: AgentConfig) -> Result<(Updater, StateDir), String> {
    let version: Version = VERSION.parse().map_err(|e| format!("{e}"))?;
    let state = StateDir::open(&config.state_dir).map_err(|e| e.to_string())?;
    let worker_id = state.worker_id().map_err(|e| e.to_string())?;
    let telemetry = Arc::new(Telemetry::new(state.clone(), VERSION));
    let client = UpdateClient::new(&config).map_err(|e| e.to_string())?;
    let install_path = resolve_install_path(&config).map_err(|e| format!("install path: {e}"))?;
    let session = WorkerSession {
        state: state.clone(),
        client,
        telemetry,
        worker_id,
        version,
        platform: manifests::BUILD_PLATFORM.to_owned(),
    };
    let updater = Updater::new(
        config,
        session,
        TaskGate::new(),
        install_path,
        Duration::from_secs(60),
    )
    .map_err(|e| e.to_string())?;
    Ok((updater, state))
}

/// `worker-agent update check`: what would happen, changing nothing on disk. The updater runs
/// on a scratch copy of the state directory (dropped afterwards), so the serial it accepts,
/// a root it follows, a worker id it creates never reach the agent's own state.
pub async fn check(mut config: AgentConfig) -> i32 {
    config.no_auto_update = true;
    config.long_poll = false;
    let scratch = match scratch_copy(&config.state_dir) {
        Ok(scratch) => scratch,
        Err(error) => {
            return fail(&format!(
                "cannot copy {} to a scratch directory: {error}",
                config.state_dir.display()
            ))
        }
    };
    config.state_dir = scratch.path().to_owned();
    let (mut updater, _) = match one_shot_updater(config).await {
        Ok(pair) => pair,
        Err(message) => return fail(&message),
    };
    match updater.check_once().await {
        Ok(_) => {
            println!("{}", updater.describe());
            0
        }
        Err(failure) => fail(&format!("[{}] {}", failure.reason, failure.message)),
    }
}

/// `worker-agent update apply`: stage the offered update now.
pub async fn apply(mut config: AgentConfig) -> i32 {
    config.force_update = true;
    config.long_poll = false;
    config.no_auto_update = false;
    config.auto_update_env = true;
    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(error) => return fail(&error.to_string()),
    };
    let Ok(Some(_lock)) = state.try_lock() else {
        return fail(&format!(
            "another updater (pid {}) holds the update lock: the agent is running; restart it with --force-update instead",
            state.lock_holder().unwrap_or_default()
        ));
    };
    let (mut updater, state) = match one_shot_updater(config).await {
        Ok(pair) => pair,
        Err(message) => return fail(&message),
    };
    match updater.check_once().await {
        Ok(true) => {
            let pending = state.pending().ok().flatten();
            println!(
                "staged {} at {}; the next `worker-agent run` holds it in probation, then installs it",
                pending.as_ref().map(|p| p.to_version.to_string()).unwrap_or_default(),
                pending.map(|p| p.staged_path.display().to_string()).unwrap_or_default()
            );
            0
        }
        Ok(false) => {
            println!("{}", updater.describe());
            0
        }
        Err(failure) => fail(&format!("[{}] {}", failure.reason, failure.message)),
    }
}

/// `worker-agent update rollback`: the previous binary back at the install path.
pub fn rollback(config: &AgentConfig) -> i32 {
    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(error) => return fail(&error.to_string()),
    };
    let Ok(Some(_lock)) = state.try_lock() else {
        return fail("the agent is running (it holds the update lock); stop it first");
    };
    let install = match resolve_install_path(config) {
        Ok(path) => path,
        Err(error) => return fail(&format!("install path: {error}")),
    };
    let dir = crate::handover::install_dir(&install);
    let previous = crate::handover::previous_path(&install);
    if !previous.exists() {
        return fail(&format!("no previous version at {}", previous.display()));
    }
    if let Err(error) =
        std::fs::rename(&previous, &install).and_then(|()| crate::state::sync_dir(dir))
    {
        return fail(&format!("cannot put {} back: {error}", previous.display()));
    }
    if let (Ok(mut trust), Ok(version)) = (
        state.load_trust(&config.root, &config.channel),
        VERSION.parse::<Version>(),
    ) {
        trust.quarantined.insert(version);
        let _ = state.save_trust(&trust);
    }
    println!(
        "rolled back: {} now holds the previous version; {VERSION} is quarantined",
        install.display()
    );
    0
}

/// A temporary copy of the files of `state_dir` the updater reads (a missing directory gives
/// an empty one: what a first start would see). The lock, the outbox and `ready.json` stay out.
fn scratch_copy(state_dir: &Path) -> std::io::Result<tempfile::TempDir> {
    let scratch = tempfile::Builder::new()
        .prefix("worker-agent-check-")
        .tempdir()?;
    let entries = match std::fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(scratch),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let skipped = ["update.lock", crate::handover::READY_FILE];
        if entry.file_type()?.is_file() && !skipped.iter().any(|s| name == *s) {
            std::fs::copy(entry.path(), scratch.path().join(&name))?;
        }
    }
    Ok(scratch)
}
