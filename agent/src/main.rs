//! `worker-agent`: parse the command line (and `.env`), set up the logs (`logs`), then run as the
//! supervisor, the worker child, or an operator command.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use esup_runner::local::LocalTaskArgs;
use worker_agent::config::AgentConfig;
use worker_agent::simulate::SimulateArgs;
use worker_agent::status::StatusArgs;
use worker_agent::{child, commands, config_check, enrol, logs, simulate, status, supervisor};

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
    /// Internal: confine a media tool with Landlock to writing its task workspace, then run it
    /// (the runner starts ffmpeg and Whisper through this).
    #[command(name = "tool-sandbox", hide = true)]
    ToolSandbox(esup_runner::sandbox::SandboxArgs),
}

#[derive(Debug, Subcommand)]
enum TaskAction {
    /// Run one encoding, studio or transcription task on local files and print its outputs.
    Run(LocalTaskArgs),
}

#[derive(Debug, Subcommand)]
enum UpdateAction {
    /// Check what the update server offers and what this agent would do (changes nothing on
    /// disk: it works on a scratch copy of the state directory).
    Check(AgentConfig),
    /// Download, verify and stage the offered update now (the agent must not be running); the
    /// next `worker-agent run` holds it in probation before installing it.
    Apply(AgentConfig),
    /// Put the previous version back at the install path (the agent must not be running).
    Rollback(AgentConfig),
    /// Show the local update state (read only, no server asked): version, channel, trust,
    /// pending update, quarantine, counters.
    Status(StatusArgs),
}

impl Command {
    /// The configuration of a command that talks to the update server, and whether it is `run`.
    fn agent_config(&mut self) -> Option<(&mut AgentConfig, bool)> {
        match self {
            Command::Run(config) => Some((config, true)),
            Command::Update {
                action: UpdateAction::Check(config) | UpdateAction::Apply(config),
            } => Some((config, false)),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    // A `.env` in the working directory supplies defaults; real environment variables win.
    let _ = dotenvy::dotenv();
    // A configuration that does not parse, or cannot work, is refused once with one line and
    // exit 78 (`config_check`): restarting cannot mend it.
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match config_check::usage_error_line(&error, &Cli::command()) {
            Some(line) => return exit_code(config_check::refuse(&line)),
            None => error.exit(),
        },
    };
    // Before logs, runtime or threads: the restriction is made single-threaded, then the tool
    // replaces this process.
    if let Command::ToolSandbox(args) = &cli.command {
        return exit_code(esup_runner::sandbox::main(args));
    }
    if let Some((config, run)) = cli.command.agent_config() {
        if let Err(error) = config_check::prepare(config, run) {
            return exit_code(config_check::refuse(&error.to_string()));
        }
    }
    let role = if supervisor::is_child() {
        "worker"
    } else {
        "supervisor"
    };
    if let Err(message) = logs::init() {
        eprintln!("worker-agent: error: {message}");
        return ExitCode::FAILURE;
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
    // Enrols once, before anything talks to the update server (the supervisor does; its worker
    // child finds the stored credential).
    if let Some((config, _)) = cli.command.agent_config() {
        if let Err(message) = runtime.block_on(enrol::ensure_enrolled(config)) {
            return exit_code(config_check::refuse(&message));
        }
    }
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run(config) if supervisor::is_child() => child::run_child(config).await,
            Command::Run(config) => commands::supervise(config).await,
            Command::Update { action } => match action {
                UpdateAction::Check(config) => commands::check(config).await,
                UpdateAction::Apply(config) => commands::apply(config).await,
                UpdateAction::Rollback(config) => commands::rollback(&config),
                UpdateAction::Status(args) => status::status(&args),
            },
            Command::Task {
                action: TaskAction::Run(args),
            } => esup_runner::local::run(args).await,
            Command::Simulate(args) => simulate::run(args).await,
            Command::ToolSandbox(_) => unreachable!("handled before the runtime starts"),
        }
    });
    exit_code(code)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
