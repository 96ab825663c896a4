//! `worker-agent`: the self-updating media worker. This is the skeleton of the foundation issue:
//! it builds at any version (`WORKER_AGENT_VERSION` at build time) and reports it.

use clap::Parser;

/// Self-updating media worker agent (ESUP runner protocol).
#[derive(Debug, Parser)]
#[command(name = "worker-agent", version = manifests::long_version!(), about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("worker-agent {}", env!("BUILD_VERSION"));
}
