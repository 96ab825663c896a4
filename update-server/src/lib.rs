//! The update server: the authority a worker-agent fleet polls.
//!
//! It serves signed channel statements (signed here, with the online channel key), release
//! manifests and artifacts (signed offline by release engineers: this server verifies them and
//! can never mint one), keeps the fleet inventory and the audit trail of update attempts, runs
//! staged rollouts and halts them when canaries fail.
//!
//! [`open`] checks the configuration and loads the state; [`run`] serves until the shutdown
//! token is cancelled, then drains in-flight requests.

pub mod api;
pub mod api_docs;
pub mod config;
pub mod console;
pub mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod openapi;
pub mod postgres;
pub mod sqlite;
pub mod state;
pub mod store;
pub mod tokens;

use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServeConfig;
pub use state::App;

/// The exit code of a refused configuration (`EX_CONFIG` of sysexits.h): a bad flag value, an
/// unreadable or unusable root, key, token file or data directory. The shipped systemd unit
/// lists it in `RestartPreventExitStatus=` (restarting cannot mend a configuration), the same
/// code the worker-agent exits with on a bad configuration. Any other failure exits 1.
pub const EXIT_CONFIG: u8 = 78;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configuration problem, described in one line.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

impl StartupError {
    /// The process exit code for this failure: [`EXIT_CONFIG`] for a configuration problem, 1
    /// otherwise (a store that fails, serving that fails: a restart may help).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Config(_) => EXIT_CONFIG,
            StartupError::Store(_) | StartupError::Serve(_) => 1,
        }
    }
}

/// Opens the data directory and the store, checks the configuration and loads the state.
pub fn open(config: ServeConfig) -> Result<Arc<App>, StartupError> {
    if config.idle_timeout < config.header_read_timeout {
        return Err(StartupError::Config(format!(
            "--idle-timeout ({:?}) is shorter than --header-read-timeout ({:?})",
            config.idle_timeout, config.header_read_timeout
        )));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartupError::Config(format!(
            "cannot create data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let store: Arc<dyn store::Store> = match &config.database_url {
        // An unreachable PostgreSQL is not a configuration error: a restart may find it up.
        Some(url) => Arc::new(postgres::PostgresStore::open(url)?),
        None => Arc::new(
            sqlite::SqliteStore::open(&config.data_dir).map_err(|e| match e {
                store::StoreError::Database { path, source } => StartupError::Config(format!(
                    "cannot open database {}: {source}",
                    path.display()
                )),
                other => StartupError::Store(other),
            })?,
        ),
    };
    Ok(Arc::new(App::open(config, store)?))
}

/// The HTTPS configuration of `--tls-cert`/`--tls-key`, read and checked (none: plain HTTP).
pub async fn tls_config(config: &ServeConfig) -> Result<Option<RustlsConfig>, StartupError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    RustlsConfig::from_pem_file(cert, key)
        .await
        .map(Some)
        .map_err(|e| {
            StartupError::Config(format!(
                "cannot serve HTTPS with certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            ))
        })
}

/// Serves `app` on `listener` (over HTTPS with `tls`) until `shutdown` is cancelled, then
/// drains in-flight requests for up to `--drain-timeout`.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let drain_timeout = app.config.drain_timeout;
    // The first retention pass is done before serving, so a server started with a shorter
    // retention never answers from rows past it.
    if let Err(error) = app.prune().await {
        tracing::error!(%error, "retention pass at start failed");
    }
    let resigner = tokio::spawn(resign_loop(app.clone(), shutdown.clone()));
    let pruner = tokio::spawn(prune_loop(app.clone(), shutdown.clone()));
    let waves = tokio::spawn(wave_loop(app.clone(), shutdown.clone()));
    // Other replicas' changes (PostgreSQL only; returns at once otherwise).
    let follower = tokio::spawn(app.clone().follow_replicas(shutdown.clone()));
    let serving = tokio::spawn(serve(app, listener, tls, shutdown.clone()));
    shutdown.cancelled().await;
    tracing::info!(
        drain_timeout_s = drain_timeout.as_secs(),
        "shutting down: draining requests"
    );
    let outcome = match tokio::time::timeout(drain_timeout, serving).await {
        Ok(Ok(result)) => result.map_err(StartupError::Serve),
        Ok(Err(join)) => Err(StartupError::Serve(std::io::Error::other(join))),
        Err(_) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
            Ok(())
        }
    };
    resigner.abort();
    pruner.abort();
    waves.abort();
    follower.abort();
    outcome
}

/// [`run`]'s server, plain HTTP or HTTPS (axum-server does the TLS handshakes, each in its
/// connection's task, so a slow client never holds up the accept loop), with the connection
/// limits: `--max-connections` ([`limits::ConnectionLimit`]), `--header-read-timeout` for a new
/// connection's first request (which also bounds the TLS/protocol detection) and
/// `--idle-timeout` for the next request on a kept-alive one (hyper's header-read timer, which
/// runs while a connection waits for a request head). It stops accepting on `shutdown` and lets
/// open connections finish (bounded by [`run`]'s drain timeout).
async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config = &app.config;
    let (header_read_timeout, idle_timeout) = (config.header_read_timeout, config.idle_timeout);
    let service = limits::ConnectionLimit::new(
        http::router(http::Ctx::new(app.clone(), shutdown.clone())),
        config.max_connections,
    );
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(None);
        }
    });
    let server = axum_server::from_tcp(listener.into_std()?)?.handle(handle);
    match tls {
        None => {
            limits::with_timeouts(server, header_read_timeout, idle_timeout)
                .serve(service)
                .await
        }
        Some(tls) => {
            limits::with_timeouts(
                server.acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls)),
                header_read_timeout,
                idle_timeout,
            )
            .serve(service)
            .await
        }
    }
}

/// Re-signs channel statements before they expire, so a healthy fleet never sees a stale one.
async fn resign_loop(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        app.resign_due().await;
        tokio::select! {
            () = tokio::time::sleep(app.next_resign_check()) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Rollout plans advance by themselves: every second, each channel's plan admits workers and
/// opens its next wave when the fleet allows (`state::waves`).
async fn wave_loop(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
        app.advance_waves().await;
    }
}

/// Retention (`--report-retention`, `--worker-retention`) every `--prune-interval` after the
/// pass at start. A failed pass is logged and retried at the next interval.
async fn prune_loop(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(app.config.prune_interval) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(error) = app.prune().await {
            tracing::error!(%error, "retention pass failed");
        }
    }
}
