//! `update-server`: parse the configuration, set up JSON logs, bind, and hand over to
//! [`update_server::run`].

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use update_server::ServeConfig;

/// mimalloc instead of glibc malloc: a poll allocates a few dozen small blocks across the
/// runtime's threads, and glibc's malloc/free took a quarter of the server's user CPU on
/// `/latest` (`scripts/bench-server.sh`, `wiki/benchmarks/server.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Update server for worker-agent fleets: signed channels, artifacts, inventory, staged rollouts.
#[derive(Debug, Parser)]
#[command(name = "update-server", version = manifests::long_version!(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start and moved out at once: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the worker and admin APIs.
    Serve(ServeConfig),
    /// Copy a SQLite deployment's state into an empty PostgreSQL database (one transaction).
    Migrate(update_server::migrate::MigrateConfig),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        Command::Serve(config) => config,
        Command::Migrate(config) => return migrate(&config),
    };
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UPDATE_SERVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => return fail(&format!("cannot listen on {}: {error}", config.listen)),
        };
        let address = match listener.local_addr() {
            Ok(address) => address,
            Err(error) => return fail(&format!("cannot read the bound address: {error}")),
        };
        let tls = match update_server::tls_config(&config).await {
            Ok(tls) => tls,
            Err(error) => return refuse(&error),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = match tokio::task::block_in_place(|| update_server::open(config)) {
            Ok(app) => app,
            Err(error) => return refuse(&error),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        println!("update-server listening on {scheme}://{address}");
        let _ = std::io::stdout().flush();
        let server = tokio::spawn(update_server::run(app, listener, tls, shutdown.clone()));
        match server.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(error)) => fail(&error.to_string()),
            Err(error) => fail(&format!("server task failed: {error}")),
        }
    })
}

/// `update-server migrate`: one line per table copied, or one error line and exit code 1
/// (nothing written).
fn migrate(config: &update_server::migrate::MigrateConfig) -> ExitCode {
    match update_server::migrate::migrate(config) {
        Ok(counts) => {
            let total: usize = counts.iter().map(|(_, rows)| rows).sum();
            for (table, rows) in &counts {
                println!("copied {table}: {rows}");
            }
            println!(
                "migrated {total} rows from {} to {}",
                config.from,
                update_server::postgres::redact(&config.to)
            );
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format!("migrate: {error}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("update-server: error: {message}");
    ExitCode::FAILURE
}

/// A start-up refusal: one line, and [`update_server::EXIT_CONFIG`] (78) for a configuration
/// problem, so systemd does not restart into the same refusal.
fn refuse(error: &update_server::StartupError) -> ExitCode {
    eprintln!("update-server: error: {error}");
    ExitCode::from(error.exit_code())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    shutdown.cancel();
}
