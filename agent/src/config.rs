//! Configuration of `worker-agent run`: flags, each also from the environment or a `.env` file.
//! Booleans and durations parse strictly, in the syntax every binary shares (`config_syntax`):
//! a `*_SECS` value is plain seconds or `30s`, `5m`, `2h`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Options shared by `run` and the `update` commands.
#[derive(Debug, Clone, Args)]
pub struct AgentConfig {
    /// Base URL of the update server, or a comma-separated list of replicas' URLs: the agent
    /// uses the first that answers and stays on it; when it is unreachable (no connection, a
    /// reset, a timeout) the next one of the list is tried at once, for every request.
    #[arg(long = "update-server", env = "UPDATE_SERVER_URL")]
    pub update_server: String,
    /// Channel to follow (`canary`, `stable`, ...).
    #[arg(long, env = "UPDATE_CHANNEL", default_value = "stable")]
    pub channel: String,
    /// Worker token for the update server (`Authorization: Bearer`). Prefer `--token-file`
    /// (or systemd `LoadCredential=worker-token:...`): a token here is visible in the process
    /// list.
    #[arg(
        long,
        env = "WORKER_TOKEN",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,
    /// A file holding the worker token (refused when group or others can read it). Unset, and
    /// no `--token`: `$CREDENTIALS_DIRECTORY/worker-token` (systemd `LoadCredential=`) if present.
    #[arg(long, env = "WORKER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A file holding a join token (`worker-release enroll-token`; refused when group or others
    /// can read it): instead of a shared worker token, the agent enrols once with it and keeps
    /// its own credential in `STATE_DIR/worker.credential` (mode 0600), which it uses from then
    /// on (the join token file may then be deleted). Unset, and no worker token:
    /// `$CREDENTIALS_DIRECTORY/worker-enroll-token` (systemd `LoadCredential=`) if present.
    #[arg(long, env = "WORKER_ENROLL_TOKEN_FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// The join token to enrol with, when no credential is stored yet (set by
    /// `config_check::prepare`, spent by `enrol::ensure_enrolled`).
    #[arg(skip)]
    pub enrol_with: Option<String>,
    /// The trusted root installed with the agent; used only until the state directory holds a
    /// newer verified root.
    #[arg(long, env = "TRUSTED_ROOT")]
    pub root: PathBuf,
    /// Where the agent keeps its identity, trust state, staged downloads and locks.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: PathBuf,
    /// Never update (still report the running version). `AUTO_UPDATE=0` does the same.
    #[arg(long)]
    pub no_auto_update: bool,
    /// `AUTO_UPDATE` from the environment, a boolean (`0`/`false`/`no`/`off` disables
    /// updates; anything but a boolean is a configuration error).
    #[arg(long, env = "AUTO_UPDATE", default_value = "1", hide = true, value_parser = config_syntax::parse_bool)]
    pub auto_update_env: bool,
    /// Check and apply now, once, ignoring cohort, jitter and busy deferral (never the signature
    /// chain); later checks, and the version it installs, run unforced.
    #[arg(long)]
    pub force_update: bool,
    /// Keep serving tasks while a verified channel statement's signed `minimum_version` is
    /// above this version (default: refuse new tasks until updated). Either way the agent runs
    /// and installs the channel's release. `--force-start` is the older name.
    #[arg(long, visible_alias = "force-start", env = "SERVE_BELOW_MINIMUM", value_parser = config_syntax::parse_bool)]
    pub serve_below_minimum: bool,
    /// How long a new version must stay up, once ready, before it is kept.
    #[arg(long, env = "PROBATION_SECS", default_value_t = 30, value_parser = config_syntax::parse_secs)]
    pub probation_secs: u64,
    /// How long a new version gets to become ready (task API bound; the update server's answer
    /// is not awaited) before it is rolled back.
    #[arg(long, env = "READY_TIMEOUT_SECS", default_value_t = 60, value_parser = config_syntax::parse_secs)]
    pub ready_timeout_secs: u64,
    /// Poll with long polls (`wait=`) instead of plain polls every `poll_interval_s`.
    #[arg(long, env = "UPDATE_LONG_POLL", default_value_t = true, action = clap::ArgAction::Set, value_parser = config_syntax::parse_bool)]
    pub long_poll: bool,
    /// Override the poll interval the server suggests (seconds).
    #[arg(long, env = "UPDATE_POLL_INTERVAL_SECS", value_parser = config_syntax::parse_secs)]
    pub poll_interval_secs: Option<u64>,
    /// Longest time to defer an update while tasks run; after it, apply only if forced or urgent.
    #[arg(long, env = "UPDATE_MAX_DEFERRAL_SECS", default_value_t = 7200, value_parser = config_syntax::parse_secs)]
    pub max_deferral_secs: u64,
    /// Downloads slower than this (bytes/s, over 10 s windows) are aborted and retried.
    #[arg(long, env = "UPDATE_MIN_RATE_BYTES", default_value_t = 10 * 1024)]
    pub min_rate_bytes: u64,
    /// Connect timeout for update-server requests (seconds).
    #[arg(long, env = "UPDATE_CONNECT_TIMEOUT_SECS", default_value_t = 10, value_parser = config_syntax::parse_secs)]
    pub connect_timeout_secs: u64,
    /// PEM file of CA certificates to trust for the update server and artifact mirrors, in
    /// addition to the system's: for a server whose certificate an internal CA issued. A
    /// missing or unreadable file, or one without a certificate, is a configuration error.
    /// (Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.)
    #[arg(long = "ca-bundle", env = "UPDATE_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Longest silence while reading a response (seconds).
    #[arg(long, env = "UPDATE_READ_TIMEOUT_SECS", default_value_t = 30, value_parser = config_syntax::parse_secs)]
    pub read_timeout_secs: u64,
    /// First pause (seconds) after a refused channel answer, and how long an artifact source
    /// that served bad bytes is avoided at first; each doubles on every new refusal, up to 60
    /// times this (the default: 1 minute doubling to 1 hour).
    #[arg(long, env = "UPDATE_RETRY_BACKOFF_SECS", default_value_t = 60, value_parser = config_syntax::parse_secs)]
    pub retry_backoff_secs: u64,
    /// Download attempts (resuming each time) before an update attempt fails.
    #[arg(long, env = "UPDATE_DOWNLOAD_ATTEMPTS", default_value_t = 5)]
    pub download_attempts: u32,
    /// Address of the agent's own `/metrics` and `/healthz`.
    #[arg(long, env = "AGENT_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// The install path to update (default: this executable, symlinks resolved once at start-up).
    #[arg(long, env = "WORKER_AGENT_INSTALL_PATH")]
    pub install_path: Option<PathBuf>,
    /// The ESUP runner layer (on when `MANAGER_URL` is set).
    #[command(flatten)]
    pub runner: esup_runner::config::RunnerConfig,
}

impl AgentConfig {
    /// Whether automatic updates are on.
    pub fn auto_update(&self) -> bool {
        self.auto_update_env && !self.no_auto_update
    }

    /// Probation as a duration.
    pub fn probation(&self) -> Duration {
        Duration::from_secs(self.probation_secs)
    }

    /// The update server's base URL without a trailing slash (the first of the list).
    pub fn server_base(&self) -> &str {
        self.server_bases()
            .next()
            .unwrap_or_else(|| self.update_server.trim_end_matches('/'))
    }

    /// Every update server URL of `--update-server` (comma-separated), in order, each without a
    /// trailing slash; empty entries are skipped.
    pub fn server_bases(&self) -> impl Iterator<Item = &str> {
        self.update_server
            .split(',')
            .map(|url| url.trim().trim_end_matches('/'))
            .filter(|url| !url.is_empty())
    }
}
