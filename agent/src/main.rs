//! `worker-agent`: parse the command line (and `.env`), set up JSON logs, then run as the
//! supervisor, the worker child, or an operator command.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use esup_runner::local::LocalTaskArgs;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use worker_agent::config::AgentConfig;
use worker_agent::simulate::SimulateArgs;
use worker_agent::{child, commands, config_check, simulate, supervisor};

/// Self-updating media worker agent (ESUP runner protocol) with signed releases.
#[derive(Debug, Parser)]
#[command(name = "worker-agent", version = manifests::long_version!(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: a supervisor that runs the worker and judges its updates.
    Run(AgentConfig),
    /// Operator commands for updates.
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// Media tasks run locally, without a Manager.
    Task {
        #[command(subcommand)]
        action: TaskAction,
    },
    /// Run many simulated agents in this process against a real update server (benchmarks).
    Simulate(SimulateArgs),
}

#[derive(Debug, Subcommand)]
enum TaskAction {
    /// Run one encoding, studio or transcription task on local files and print its outputs.
    Run(LocalTaskArgs),
}

#[derive(Debug, Subcommand)]
enum UpdateAction {
    /// Check what the update server offers and what this agent would do (changes nothing).
    Check(AgentConfig),
    /// Download, verify and stage the offered update now (the agent must not be running); the
    /// next `worker-agent run` holds it in probation before installing it.
    Apply(AgentConfig),
    /// Put the previous version back at the install path (the agent must not be running).
    Rollback(AgentConfig),
    /// Show the local update state: version, trust, pending update, quarantine, counters.
    Status(AgentConfig),
}

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

fn main() -> ExitCode {
    // A `.env` in the working directory supplies defaults; real environment variables win.
    let _ = dotenvy::dotenv();
    // A configuration that does not parse, or cannot work, is refused once with one line and
    // exit 78 (`config_check`): restarting cannot mend it.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match config_check::usage_error_line(&error, &Cli::command()) {
            Some(line) => return exit_code(config_check::refuse(&line)),
            None => error.exit(),
        },
    };
    if let Command::Run(config) = &cli.command {
        if let Err(error) = config_check::check(config) {
            return exit_code(config_check::refuse(&error.to_string()));
        }
    }
    let role = if supervisor::is_child() {
        "worker"
    } else {
        "supervisor"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("WORKER_AGENT_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(filter);
    // `LOG_DIRECTORY` (as the Python runner has it): the same JSON lines also go to
    // `LOG_DIRECTORY/worker-agent.log`, appended by the supervisor and its workers alike.
    match log_file() {
        Ok(Some(file)) => logs
            .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
            .init(),
        Ok(None) => logs.with_writer(std::io::stderr).init(),
        Err(message) => {
            eprintln!("worker-agent: error: {message}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("worker-agent: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let span = tracing::info_span!(
        "agent",
        role,
        version = child::VERSION,
        pid = std::process::id()
    );
    let _enter = span.enter();
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run(config) if supervisor::is_child() => child::run_child(config).await,
            Command::Run(config) => commands::supervise(config).await,
            Command::Update { action } => match action {
                UpdateAction::Check(config) => commands::check(config).await,
                UpdateAction::Apply(config) => commands::apply(config).await,
                UpdateAction::Rollback(config) => commands::rollback(&config),
                UpdateAction::Status(config) => commands::status(&config),
            },
            Command::Task {
                action: TaskAction::Run(args),
            } => esup_runner::local::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
        }
    });
    exit_code(code)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
