//! Configuration of `update-server serve`: flags, each also settable by environment. Durations
//! are in the syntax every binary shares (`config_syntax::parse_duration`: `30`, `30s`, `5m`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// `update-server serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed on stdout).
    #[arg(long, env = "UPDATE_SERVER_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Directory of the SQLite database and the content-addressed artifacts (created if missing).
    #[arg(long, env = "UPDATE_SERVER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// PostgreSQL database to keep the state in (`postgres://user:password@host:port/db`), so
    /// several replicas can share it; without it, SQLite in `--data-dir`. Artifacts stay in
    /// `--data-dir` either way.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The trusted root document (version 1 or later); rotations are published through the admin API.
    #[arg(long, env = "UPDATE_SERVER_ROOT")]
    pub root: PathBuf,
    /// The online channel private key (must be a key of the root's channel role).
    #[arg(long, env = "UPDATE_SERVER_CHANNEL_KEY")]
    pub channel_key: PathBuf,
    /// Admin tokens: one per line, `token` or `name=token` (the name is written to the audit trail).
    #[arg(long, env = "UPDATE_SERVER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: PathBuf,
    /// Shared worker tokens: one per line, `token` or `name=token`. Whoever holds one may speak
    /// for any worker id that is not enrolled (small sites, tests). Without it, only enrolled
    /// workers are served (`worker-release enroll-token`): the recommended setup.
    #[arg(long, env = "UPDATE_SERVER_WORKER_TOKEN_FILE")]
    pub worker_token_file: Option<PathBuf>,
    /// Read-only viewer tokens (same format): they may read the admin API (status, audit,
    /// channels, releases) and the console, but every action answers 403 `read_only`.
    #[arg(long, env = "UPDATE_SERVER_VIEWER_TOKEN_FILE")]
    pub viewer_token_file: Option<PathBuf>,
    /// How long a version must have been on the canary channel before it may be promoted to stable.
    #[arg(long, env = "UPDATE_SERVER_SOAK", default_value = "1h", value_parser = config_syntax::parse_duration)]
    pub soak: Duration,
    /// Highest canary failure rate (failed + rolled back workers / workers that tried) that still
    /// allows promotion to stable.
    #[arg(
        long,
        env = "UPDATE_SERVER_PROMOTE_MAX_FAILURE_RATE",
        default_value_t = 0.05
    )]
    pub promote_max_failure_rate: f64,
    /// Lifetime of a signed channel statement.
    #[arg(long, env = "UPDATE_SERVER_STATEMENT_TTL", default_value = "24h", value_parser = config_syntax::parse_duration)]
    pub statement_ttl: Duration,
    /// Re-sign a statement when less than this is left before it expires (default: a quarter of the TTL).
    #[arg(long, env = "UPDATE_SERVER_RESIGN_BEFORE", value_parser = config_syntax::parse_duration)]
    pub resign_before: Option<Duration>,
    /// Poll interval suggested to agents.
    #[arg(long, env = "UPDATE_SERVER_POLL_INTERVAL", default_value = "60s", value_parser = config_syntax::parse_duration)]
    pub poll_interval: Duration,
    /// Longest a long poll (`wait=`) is held.
    #[arg(long, env = "UPDATE_SERVER_LONG_POLL_MAX", default_value = "60s", value_parser = config_syntax::parse_duration)]
    pub long_poll_max: Duration,
    /// Auto-halt a channel when this many distinct workers failed or rolled back its release.
    #[arg(long, env = "UPDATE_SERVER_AUTO_HALT_FAILURES", default_value_t = 3)]
    pub auto_halt_failures: u64,
    /// ... or when this share of the workers that tried failed, once at least
    /// `--auto-halt-min-tried` tried.
    #[arg(long, env = "UPDATE_SERVER_AUTO_HALT_RATIO", default_value_t = 0.2)]
    pub auto_halt_ratio: f64,
    /// See `--auto-halt-ratio`.
    #[arg(long, env = "UPDATE_SERVER_AUTO_HALT_MIN_TRIED", default_value_t = 5)]
    pub auto_halt_min_tried: u64,
    /// A worker not seen for this long counts as stale in the fleet figures.
    #[arg(long, env = "UPDATE_SERVER_STALE_AFTER", default_value = "15m", value_parser = config_syntax::parse_duration)]
    pub stale_after: Duration,
    /// Largest artifact accepted for upload.
    #[arg(long, env = "UPDATE_SERVER_MAX_ARTIFACT_BYTES", default_value_t = 4 << 30)]
    pub max_artifact_bytes: u64,
    /// PEM certificate chain to serve HTTPS with (with `--tls-key`); without both, plain HTTP
    /// (e.g. behind a TLS-terminating reverse proxy).
    #[arg(long, env = "UPDATE_SERVER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "UPDATE_SERVER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept a `--root` rotation at start that weakens trust (a key removed from a role, a
    /// threshold lowered); without it such a root is refused, naming what it weakens.
    #[arg(long, env = "UPDATE_SERVER_ALLOW_WEAKER")]
    pub allow_weaker: bool,
    /// A new connection must send its first request's headers within this (slow-loris
    /// clients are cut off).
    #[arg(long, env = "UPDATE_SERVER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = config_syntax::parse_duration)]
    pub header_read_timeout: Duration,
    /// A kept-alive connection is closed when its next request's headers have not arrived
    /// within this (at least `--header-read-timeout`; above the agents' poll interval so their
    /// connections are reused).
    #[arg(long, env = "UPDATE_SERVER_IDLE_TIMEOUT", default_value = "75s", value_parser = config_syntax::parse_duration)]
    pub idle_timeout: Duration,
    /// Most connections open at once; further ones wait in the listen backlog until one closes.
    #[arg(long, env = "UPDATE_SERVER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest request body on every route but the artifact upload (`--max-artifact-bytes`);
    /// above it: 413 `too_large`.
    #[arg(long, env = "UPDATE_SERVER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Requests a minute each worker credential may make to `report` and to `register`
    /// (separately); above it: 429 `rate_limited` with `Retry-After`.
    #[arg(long, env = "UPDATE_SERVER_WORKER_RATE_LIMIT", default_value_t = 600)]
    pub worker_rate_limit: u32,
    /// Burst allowed above `--worker-rate-limit` (requests at once after a quiet spell).
    #[arg(long, env = "UPDATE_SERVER_WORKER_RATE_BURST", default_value_t = 100)]
    pub worker_rate_burst: u32,
    /// Update reports older than this (by the time the server received them) are deleted.
    #[arg(long, env = "UPDATE_SERVER_REPORT_RETENTION", default_value = "90d", value_parser = config_syntax::parse_duration)]
    pub report_retention: Duration,
    /// Workers not seen for this long are deleted from the inventory (and leave the fleet
    /// gauges); one that comes back is registered again.
    #[arg(long, env = "UPDATE_SERVER_WORKER_RETENTION", default_value = "30d", value_parser = config_syntax::parse_duration)]
    pub worker_retention: Duration,
    /// How often the retention runs (also once at start).
    #[arg(long, env = "UPDATE_SERVER_PRUNE_INTERVAL", default_value = "1h", value_parser = config_syntax::parse_duration)]
    pub prune_interval: Duration,
    /// How long in-flight requests get to finish on shutdown.
    #[arg(long, env = "UPDATE_SERVER_DRAIN_TIMEOUT", default_value = "10s", value_parser = config_syntax::parse_duration)]
    pub drain_timeout: Duration,
}

impl ServeConfig {
    /// When to re-sign a statement before its expiry.
    pub fn resign_margin(&self) -> Duration {
        self.resign_before.unwrap_or(self.statement_ttl / 4)
    }
}
