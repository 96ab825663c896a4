//! The entry points behind the command line.

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

/// `worker-agent update check`: what would happen, without changing anything but the accepted
/// serial.
pub async fn check(mut config: AgentConfig) -> i32 {
    config.no_auto_update = true;
    config.long_poll = false;
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

/// `worker-agent update status`.
pub fn status(config: &AgentConfig) -> i32 {
    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(error) => return fail(&error.to_string()),
    };
    let trust = state.load_trust(&config.root, &config.channel).ok();
    let pending = state.pending().ok().flatten();
    let counters = state.counters().unwrap_or_default();
    let value = serde_json::json!({
        "version": VERSION,
        "worker_id": state.worker_id().ok(),
        "install_path": resolve_install_path(config).ok(),
        "channel": config.channel,
        "auto_update": config.auto_update(),
        "root_version": trust.as_ref().map(|t| t.root.signed.version),
        "accepted_serial": trust.as_ref().and_then(|t| t.accepted_serial),
        "highest_version_seen": trust.as_ref().and_then(|t| t.highest_version_seen.as_ref().map(ToString::to_string)),
        "quarantined": trust.as_ref().map(|t| t.quarantined.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "pending": pending.map(|p| serde_json::json!({"to_version": p.to_version.to_string(), "staged": p.staged_path, "correlation_id": p.correlation_id})),
        "lock_holder": state.try_lock().ok().flatten().is_none().then(|| state.lock_holder()).flatten(),
        "counters": counters,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    0
}
