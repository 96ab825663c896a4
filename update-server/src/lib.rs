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
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod sqlite;
pub mod state;
pub mod store;
pub mod tokens;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServeConfig;
pub use state::App;

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

/// Opens the data directory and the store, checks the configuration and loads the state.
pub fn open(config: ServeConfig) -> Result<Arc<App>, StartupError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        StartupError::Config(format!(
            "cannot create data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let store = sqlite::SqliteStore::open(&config.data_dir).map_err(|e| match e {
        store::StoreError::Database { path, source } => {
            StartupError::Config(format!("cannot open database {}: {source}", path.display()))
        }
        other => StartupError::Store(other),
    })?;
    Ok(Arc::new(App::open(config, Arc::new(store))?))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests for
/// up to `--drain-timeout`.
pub async fn run(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartupError> {
    let drain_timeout = app.config.drain_timeout;
    let resigner = tokio::spawn(resign_loop(app.clone(), shutdown.clone()));
    let router = http::router(http::Ctx {
        app,
        shutdown: shutdown.clone(),
    });
    let server =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let serving = tokio::spawn(async move { server.await });
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
    outcome
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
