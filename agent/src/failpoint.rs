//! Fault-injection points for the crash-consistency tests: when `WORKER_AGENT_FAILPOINT` names
//! a phase (comma-separated), the process reaching it writes `STATE_DIR/failpoint-<phase>` and
//! stops there until it is killed. Unset in production; costs one environment lookup.

use std::path::Path;
use std::time::Duration;

/// The phases a test can stop the agent at.
pub const PHASES: &[&str] = &[
    "downloading",
    "patching",
    "verifying",
    "swapping",
    "swapped",
    "restarting",
    "probation",
];

/// Whether `phase` is armed.
pub fn armed(phase: &str) -> bool {
    std::env::var("WORKER_AGENT_FAILPOINT").is_ok_and(|v| v.split(',').any(|p| p.trim() == phase))
}

/// Stops here forever if `phase` is armed (async contexts).
pub async fn hit(phase: &str, state_dir: &Path) {
    if armed(phase) {
        announce(phase, state_dir);
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Stops here forever if `phase` is armed (blocking contexts: a download callback, the swap).
pub fn hit_blocking(phase: &str, state_dir: &Path) {
    if armed(phase) {
        announce(phase, state_dir);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn announce(phase: &str, state_dir: &Path) {
    tracing::warn!(%phase, "failpoint reached: stopping here until killed");
    let _ = std::fs::write(
        state_dir.join(format!("failpoint-{phase}")),
        std::process::id().to_string(),
    );
}
