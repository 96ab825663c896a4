//! `esup-manager-fake`: the `FakeManager` test fixture as a command, for the local-fleet demo
//! (`scripts/quickstart.sh`). The ESUP Manager is outside our control; this is a stand-in that
//! accepts registrations and heartbeats, records completions and serves a media directory. It
//! is not a Manager: use EsupPortail's for real.
//!
//! ```text
//! esup-manager-fake serve --token-file F --media-dir D --url-file F
//! esup-manager-fake dispatch --runner http://127.0.0.1:8082 --token-file F --task-type encoding \
//!     --source-url URL [--callback URL] [--param key=value ...] [--task-id ID] [--wait-secs 600]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use e2e::manager::{task_body, FakeManager};
use serde_json::{Map, Value};

#[derive(Debug, Parser)]
#[command(
    name = "esup-manager-fake",
    about = "A stand-in ESUP Manager for local demos (not a product)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accept runner registrations, heartbeats and completions on 127.0.0.1; serve media files.
    Serve {
        /// File holding the shared runner token.
        #[arg(long)]
        token_file: PathBuf,
        /// Directory served under /media/.
        #[arg(long)]
        media_dir: PathBuf,
        /// Where to write the base URL once listening.
        #[arg(long)]
        url_file: PathBuf,
    },
    /// Send one task to a runner and follow it to the end.
    Dispatch {
        /// The runner instance's URL.
        #[arg(long)]
        runner: String,
        /// File holding the shared runner token.
        #[arg(long)]
        token_file: PathBuf,
        /// encoding, studio or transcription.
        #[arg(long)]
        task_type: String,
        /// What the runner downloads.
        #[arg(long)]
        source_url: String,
        /// The completion callback (default: none).
        #[arg(long, default_value = "")]
        callback: String,
        /// Task parameters, `key=value`.
        #[arg(long = "param")]
        params: Vec<String>,
        /// The task id (default: a time-based one).
        #[arg(long)]
        task_id: Option<String>,
        /// Longest wait for the task (seconds).
        #[arg(long, default_value_t = 600)]
        wait_secs: u64,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("esup-manager-fake: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn read_token(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            token_file,
            media_dir,
            url_file,
        } => {
            let manager = FakeManager::start(&read_token(&token_file)?, &media_dir);
            std::fs::write(&url_file, &manager.url)
                .map_err(|e| format!("{}: {e}", url_file.display()))?;
            println!("esup-manager-fake listening on {}", manager.url);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut terminate =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .map_err(|e| e.to_string())?;
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                Ok::<(), String>(())
            })?;
            let completions = manager.completions();
            println!(
                "esup-manager-fake: stopping ({} completions received)",
                completions.len()
            );
            Ok(())
        }
        Command::Dispatch {
            runner,
            token_file,
            task_type,
            source_url,
            callback,
            params,
            task_id,
            wait_secs,
        } => {
            let token = read_token(&token_file)?;
            let mut parameters = Map::new();
            for param in params {
                let (key, value) = param
                    .split_once('=')
                    .ok_or_else(|| format!("--param {param:?}: expected key=value"))?;
                parameters.insert(key.to_owned(), Value::String(value.to_owned()));
            }
            let task_id = task_id.unwrap_or_else(|| {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                format!("demo-{secs}")
            });
            let api = e2e::fleet::Api::new(&runner, Some(&token));
            let body = task_body(
                &task_id,
                &task_type,
                &source_url,
                Value::Object(parameters),
                &callback,
            );
            // A runner that just (re)started may not be registered yet (503): retry for a while.
            let registered_by = Instant::now() + Duration::from_secs(60);
            let mut started = api.post_json("/task/run", &body);
            while started.status == 503 && Instant::now() < registered_by {
                std::thread::sleep(Duration::from_secs(1));
                started = api.post_json("/task/run", &body);
            }
            if started.status != 200 {
                return Err(format!(
                    "/task/run: HTTP {}: {}",
                    started.status,
                    started.text()
                ));
            }
            println!("task {task_id} started on {runner}");
            let deadline = Instant::now() + Duration::from_secs(wait_secs);
            let status = loop {
                let status = api.get(&format!("/task/status/{task_id}")).json();
                let state = status["status"].as_str().unwrap_or_default().to_owned();
                if state != "running" {
                    break status;
                }
                if Instant::now() > deadline {
                    return Err(format!("task {task_id} still running after {wait_secs} s"));
                }
                eprint!(
                    "\r    {task_type}: {:5.1} %",
                    status["progress"].as_f64().unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(500));
            };
            eprintln!();
            if status["status"] != "completed" {
                return Err(format!(
                    "task {task_id} ended {}: {}",
                    status["status"], status["error_message"]
                ));
            }
            let result = api.get(&format!("/task/result/{task_id}")).json();
            println!("task {task_id} completed; outputs:");
            for file in result["files"].as_array().into_iter().flatten() {
                println!("    {}", file.as_str().unwrap_or_default());
            }
            Ok(())
        }
    }
}
