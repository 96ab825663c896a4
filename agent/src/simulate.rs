//! `worker-agent simulate`: many lightweight agents in one process (placeholder until it lands).

use clap::Args;

/// Arguments of `worker-agent simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 10)]
    pub agents: usize,
}

/// Runs the simulation; returns the exit code.
pub async fn run(args: SimulateArgs) -> i32 {
    eprintln!(
        "worker-agent: simulate {} agents: not implemented yet",
        args.agents
    );
    1
}
