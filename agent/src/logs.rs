//! The agent's logs: JSON lines on stderr (one `message` key each, the span's role, version
//! and pid), except on a terminal, where a person reads them: there they are plain text lines.
//! `LOG_DIRECTORY` (as the Python runner has it) also gets the JSON lines, in
//! `LOG_DIRECTORY/worker-agent.log`, appended by the supervisor and its workers alike.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// The log file under `LOG_DIRECTORY`, when set.
fn log_file() -> Result<Option<std::fs::File>, String> {
    let Some(dir) = std::env::var_os("LOG_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("worker-agent.log"))
        })
        .map(Some)
        .map_err(|e| format!("LOG_DIRECTORY {}: {e}", dir.display()))
}

/// Installs the logger (level from `LOG_LEVEL`, else `WORKER_AGENT_LOG`, else `info`).
pub fn init() -> Result<(), String> {
    let filter = EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| EnvFilter::try_from_env("WORKER_AGENT_LOG"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = if std::io::stderr().is_terminal() {
        fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let file = log_file()?.map(|file| {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_ansi(false)
            .with_writer(Mutex::new(file))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}
