//! Per-worker enrolment: with `WORKER_ENROLL_TOKEN_FILE` the agent enrols once with the join
//! token (`POST /api/workers/enroll`), keeps the credential the server answers in
//! `STATE_DIR/worker.credential` (mode 0600) and sends it on every later request instead of a
//! shared worker token. On a restart the stored credential is used ([`crate::config_check`]
//! reads it); the join token is not sent again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::UpdateClient;
use crate::config::AgentConfig;
use crate::retry::Backoff;
use crate::state::StateDir;

/// The credential's file in the state directory.
pub const CREDENTIAL_FILE: &str = "worker.credential";

/// The longest first pause between enrolment attempts while the server cannot be reached (the
/// pause grows from there, see [`Backoff`]).
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// Where the credential of the agent with state directory `state_dir` is kept.
pub fn credential_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CREDENTIAL_FILE)
}

/// When `config` holds a join token to enrol with (no credential stored yet): enrols this
/// worker (its id from the state directory), stores the credential and makes it the token of
/// `config`. Retries while the server cannot be reached or fails (5xx, 429); a refusal (the
/// join token used up, expired, revoked or unknown; the worker enrolled already) is returned,
/// with the server's reason: restarting cannot mend it.
pub async fn ensure_enrolled(config: &mut AgentConfig) -> Result<(), String> {
    let Some(join_token) = config.enrol_with.take() else {
        return Ok(());
    };
    let state = StateDir::open(&config.state_dir).map_err(|e| e.to_string())?;
    let worker_id = state.worker_id().map_err(|e| e.to_string())?;
    let client = UpdateClient::new(config).map_err(|e| e.to_string())?;
    let base = FIRST_RETRY.min(Duration::from_secs(config.retry_backoff_secs.max(1)));
    let mut backoff = Backoff::new(base);
    let enrolled = loop {
        match client.enrol(&join_token, &worker_id).await {
            Ok(enrolled) => break enrolled,
            Err(failure) if failure.retryable => {
                let pause = backoff.failed(Instant::now());
                tracing::warn!(
                    reason = failure.reason.label(),
                    error = %failure.message,
                    retry_in_s = pause.as_secs_f64(),
                    "enrolment failed; retrying"
                );
                tokio::time::sleep(pause).await;
            }
            Err(failure) => {
                return Err(format!(
                    "enrolment with WORKER_ENROLL_TOKEN_FILE refused [{}]: {}",
                    failure.reason.label(),
                    failure.message
                ))
            }
        }
    };
    if enrolled.worker_id != worker_id {
        return Err(format!(
            "the update server enrolled worker {:?}, not this worker {worker_id:?}",
            enrolled.worker_id
        ));
    }
    let path = credential_path(&config.state_dir);
    write_secret(&path, &enrolled.credential)
        .map_err(|e| format!("cannot store the credential in {}: {e}", path.display()))?;
    tracing::info!(
        %worker_id,
        channel = enrolled.channel.as_deref().unwrap_or(""),
        credential = %path.display(),
        "enrolled with the update server"
    );
    config.token = enrolled.credential;
    Ok(())
}

/// Writes `secret` to `path` atomically, readable by the owner only (a temporary file of mode
/// 0600 in the same directory, synced, then renamed).
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}
