//! `worker-agent task run`: one task run locally, without a Manager (placeholder until it lands).

use clap::Args;

/// Arguments of `worker-agent task run`.
#[derive(Debug, Clone, Args)]
pub struct LocalTaskArgs {
    /// Task type: encoding, studio or transcription.
    #[arg(long = "type")]
    pub task_type: String,
}

/// Runs one task locally; returns the exit code.
pub async fn run(args: LocalTaskArgs) -> i32 {
    eprintln!(
        "worker-agent: task run {}: not implemented yet",
        args.task_type
    );
    1
}
