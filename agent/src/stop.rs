//! How the supervisor stops: SIGINT (Ctrl-C in a terminal reaches the whole process group) and
//! SIGTERM (`systemctl stop`) ask it to stop, at any moment, probation included. A stop is no
//! verdict on the version running: a probation it interrupts is recorded as
//! `probation_interrupted` and run again on the next start (see `supervisor::judge`). The worker
//! gets a bounded drain, said in the log: `RUNNER_DRAIN_TIMEOUT_SECS` for its tasks plus
//! [`STOP_MARGIN`], then it is killed.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

/// Beyond `RUNNER_DRAIN_TIMEOUT_SECS`: the worker stops the tasks still running then (up to
/// 15 s) and exits; the rest is slack for a loaded machine.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);

/// Cancels `stop` at the first SIGTERM or SIGINT. Both handlers are installed before this
/// returns, so a signal that arrives during a probation run at start-up is seen too (the
/// default action would kill the supervisor without a word).
pub fn listen(stop: CancellationToken) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop requested");
        stop.cancel();
    });
    Ok(())
}

/// The longest the supervisor waits for its worker once asked to stop.
pub fn drain_limit(config: &AgentConfig) -> Duration {
    Duration::from_secs(config.runner.runner_drain_timeout_secs).saturating_add(STOP_MARGIN)
}

/// Asks `child` (described by `what`, for the log) to finish with SIGTERM and waits for it at
/// most `limit`, then kills it. Logs what it waits for, and how it ended.
pub async fn stop_worker(child: &mut Child, limit: Duration, what: &str) {
    let pid = child.id().unwrap_or_default();
    let limit_s = limit.as_secs();
    tracing::info!(
        pid,
        limit_s,
        "stopping: waiting for {what} (pid {pid}) to finish its tasks and exit; killed after {limit_s} s"
    );
    if pid != 0 {
        let _ = kill(Pid::from_raw(pid.cast_signed()), Signal::SIGTERM);
    }
    let started = Instant::now();
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(pid, elapsed_ms, %status, "worker stopped");
        }
        Err(_) => {
            tracing::warn!(pid, limit_s, "worker did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}
