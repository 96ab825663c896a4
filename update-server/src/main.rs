//! `update-server`: serves signed channel statements, releases and artifacts to the fleet.
//! Skeleton of the foundation issue: builds and reports its version.

use clap::Parser;

/// Update server for worker-agent fleets.
#[derive(Debug, Parser)]
#[command(name = "update-server", version = manifests::long_version!(), about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("update-server {}", env!("BUILD_VERSION"));
}
