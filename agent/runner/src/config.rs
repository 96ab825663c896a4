//! Configuration of the ESUP runner layer: the Python runner's environment variables (also read
//! from `.env`), each also a flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::egress::CallbackOrigins;
use crate::pipeline::{EncodingType, MediaConfig};
use crate::source::{SourceFetcher, SourceLimits};
use crate::task_type::TaskType;

/// Media tools and transcription settings (shared by `run` and `task run`).
#[derive(Debug, Clone, Args)]
pub struct MediaArgs {
    /// `ffmpeg` executable.
    #[arg(long, env = "FFMPEG_PATH", default_value = "ffmpeg")]
    pub ffmpeg_path: PathBuf,
    /// `ffprobe` executable.
    #[arg(long, env = "FFPROBE_PATH", default_value = "ffprobe")]
    pub ffprobe_path: PathBuf,
    /// `CPU` (libx264) or `GPU` (NVENC/CUDA).
    #[arg(long, env = "ENCODING_TYPE", default_value = "CPU", value_parser = parse_encoding_type)]
    pub encoding_type: EncodingType,
    /// Python of the Whisper venv made by `scripts/setup-whisper.sh`.
    #[arg(
        long,
        env = "WHISPER_PYTHON",
        default_value = "/opt/worker-agent/whisper-venv/bin/python"
    )]
    pub whisper_python: PathBuf,
    /// Default Whisper model: `base` (multilingual) and `tiny.en` (English) are packaged in the
    /// venv; others are provisioned into `WHISPER_MODELS_DIR`.
    #[arg(long, env = "WHISPER_MODEL", default_value = "base")]
    pub whisper_model: String,
    /// Default transcription language (`auto` detects it).
    #[arg(long, env = "WHISPER_LANGUAGE", default_value = "auto")]
    pub whisper_language: String,
    /// Directory of larger CTranslate2 Whisper models, one sub-directory per model name.
    #[arg(long, env = "WHISPER_MODELS_DIR")]
    pub whisper_models_dir: Option<PathBuf>,
    /// Device for Whisper: `cpu`, `cuda` or `auto`.
    #[arg(long, env = "WHISPER_DEVICE", default_value = "cpu")]
    pub whisper_device: String,
}

fn parse_encoding_type(text: &str) -> Result<EncodingType, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "CPU" => Ok(EncodingType::Cpu),
        "GPU" => Ok(EncodingType::Gpu),
        other => Err(format!("ENCODING_TYPE must be CPU or GPU, not `{other}`")),
    }
}

impl MediaArgs {
    /// The settings the pipelines use.
    pub fn media_config(&self) -> MediaConfig {
        MediaConfig {
            ffmpeg: self.ffmpeg_path.clone(),
            ffprobe: self.ffprobe_path.clone(),
            encoding_type: self.encoding_type,
            whisper_python: self.whisper_python.clone(),
            whisper_model: self.whisper_model.clone(),
            whisper_language: self.whisper_language.clone(),
            whisper_models_dir: self.whisper_models_dir.clone(),
            whisper_device: self.whisper_device.clone(),
        }
    }
}

/// Limits on downloads and on external tools (shared by `run` and `task run`).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest source file accepted, in GB (10^9 bytes; fractions allowed).
    #[arg(long, env = "MAX_VIDEO_SIZE_GB", default_value_t = 16.0)]
    pub max_video_size_gb: f64,
    /// Hosts sources may be downloaded from (comma-separated); empty allows any host.
    #[arg(
        long,
        env = "SOURCE_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub source_allowed_hosts: Vec<String>,
    /// Allow sources (and their redirects) on loopback, link-local and private addresses
    /// (`1`/`true`); off by default, so a task cannot reach the host's or the network's
    /// internal services.
    #[arg(long, env = "SOURCE_ALLOW_PRIVATE_NETWORKS", default_value = "0", action = clap::ArgAction::Set, value_parser = config_syntax::parse_bool)]
    pub source_allow_private_networks: bool,
    /// A task is refused (507) when `STORAGE_DIR` has less free space than this, in GB
    /// (10^9 bytes; fractions allowed).
    #[arg(long, env = "MIN_FREE_DISK_GB", default_value_t = 5.0)]
    pub min_free_disk_gb: f64,
    /// Most a task may write in its workspace (download included), in GB (fractions allowed):
    /// past it the task's tools are stopped, it fails and its files are removed.
    #[arg(long, env = "MAX_TASK_DISK_GB", default_value_t = 64.0)]
    pub max_task_disk_gb: f64,
    /// Connect timeout of source downloads (seconds).
    #[arg(long, env = "SOURCE_CONNECT_TIMEOUT_SECS", default_value_t = 10, value_parser = config_syntax::parse_secs)]
    pub source_connect_timeout_secs: u64,
    /// Longest silence while downloading a source (seconds).
    #[arg(long, env = "SOURCE_READ_TIMEOUT_SECS", default_value_t = 60, value_parser = config_syntax::parse_secs)]
    pub source_read_timeout_secs: u64,
    /// Longest run of a task's tools, download included ("Script timeout after N seconds").
    #[arg(long, env = "EXTERNAL_SCRIPT_TIMEOUT_SECONDS", default_value_t = 18000, value_parser = config_syntax::parse_secs)]
    pub external_script_timeout_seconds: u64,
}

impl LimitArgs {
    /// The download limits.
    pub fn source_limits(&self) -> SourceLimits {
        // Saturating float-to-int conversion is what we want for absurd values.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let max_bytes = (self.max_video_size_gb.max(0.0) * 1e9) as u64;
        SourceLimits {
            max_bytes,
            allowed_hosts: self
                .source_allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            connect_timeout: Duration::from_secs(self.source_connect_timeout_secs),
            read_timeout: Duration::from_secs(self.source_read_timeout_secs),
        }
    }

    /// The source downloader these limits describe (`SOURCE_ALLOW_PRIVATE_NETWORKS` included).
    pub fn source_fetcher(&self) -> Result<SourceFetcher, reqwest::Error> {
        SourceFetcher::with_private_networks(
            self.source_limits(),
            self.source_allow_private_networks,
        )
    }

    /// The script timeout.
    pub fn script_timeout(&self) -> Duration {
        Duration::from_secs(self.external_script_timeout_seconds)
    }
}

/// The ESUP runner layer's settings. The layer runs when `MANAGER_URL` is set.
#[derive(Debug, Clone, Args)]
pub struct RunnerConfig {
    /// The ESUP Manager (trailing `/` stripped). Unset: no runner layer (updates only).
    #[arg(long, env = "MANAGER_URL")]
    pub manager_url: Option<String>,
    /// Origins (`scheme://host[:port]`, comma-separated) completion callbacks may go to; empty:
    /// the origin of `MANAGER_URL`. A task naming another callback is refused.
    #[arg(
        long,
        env = "MANAGER_CALLBACK_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub manager_callback_origins: Vec<String>,
    /// The token the Manager and this runner share (`X-API-Token` or `Authorization: Bearer`).
    #[arg(long, env = "RUNNER_TOKEN", hide_env_values = true)]
    pub runner_token: Option<String>,
    /// Scheme of the URL the runner registers (`http` or `https`).
    #[arg(long, env = "RUNNER_PROTOCOL", default_value = "http")]
    pub runner_protocol: String,
    /// Host name the Manager reaches this runner at (also part of the runner id).
    #[arg(long, env = "RUNNER_HOST", default_value = "localhost")]
    pub runner_host: String,
    /// Address the runner instances listen on.
    #[arg(long, env = "RUNNER_LISTEN_HOST", default_value = "0.0.0.0")]
    pub runner_listen_host: String,
    /// Port of instance 0; instance i listens on base port + i.
    #[arg(long, env = "RUNNER_BASE_PORT", default_value_t = 8082)]
    pub runner_base_port: u16,
    /// First part of each runner id: `{RUNNER_BASE_NAME}-{RUNNER_HOST}-{port}`.
    #[arg(long, env = "RUNNER_BASE_NAME", default_value = "runner")]
    pub runner_base_name: String,
    /// Number of instances for a plain (legacy CSV) `RUNNER_TASK_TYPES`.
    #[arg(long, env = "RUNNER_INSTANCES", default_value_t = 1)]
    pub runner_instances: usize,
    /// Task types: CSV (`encoding,studio,transcription`, every instance) or grouped
    /// (`[2x(encoding,studio,transcription),1x(transcription)]`, one instance per member).
    #[arg(
        long,
        env = "RUNNER_TASK_TYPES",
        default_value = "encoding,studio,transcription"
    )]
    pub runner_task_types: String,
    /// The ESUP protocol version sent as `X-Runner-Version` (not the agent's own version).
    #[arg(long, env = "RUNNER_PROTOCOL_VERSION", default_value = "1.7.1")]
    pub runner_protocol_version: String,
    /// Task workspaces: `STORAGE_DIR/<task_id>/` (shared-storage Managers read it directly).
    #[arg(
        long,
        env = "STORAGE_DIR",
        default_value = "/var/lib/worker-agent/storage"
    )]
    pub storage_dir: PathBuf,
    /// Task directories older than this are removed by the cleanup.
    #[arg(long, env = "MAX_FILE_AGE_DAYS", default_value_t = 7)]
    pub max_file_age_days: u64,
    /// How often the cleanup runs (it also runs at start).
    #[arg(long, env = "CLEANUP_INTERVAL_HOURS", default_value_t = 24)]
    pub cleanup_interval_hours: u64,
    /// Heartbeat period; also the base of the reconnect loop (health check period, backoff
    /// base, capped at 20 periods).
    #[arg(long, env = "RUNNER_HEARTBEAT_SECS", default_value_t = 15, value_parser = config_syntax::parse_secs)]
    pub runner_heartbeat_secs: u64,
    /// Retries of a failed completion callback.
    #[arg(long, env = "COMPLETION_RETRIES", default_value_t = 5)]
    pub completion_retries: u32,
    /// First retry delay of a completion callback; retry n waits base * 1.5^(n-1).
    #[arg(long, env = "COMPLETION_RETRY_BASE_SECS", default_value_t = 60.0)]
    pub completion_retry_base_secs: f64,
    /// On shutdown, how long running tasks may finish before they are stopped.
    #[arg(long, env = "RUNNER_DRAIN_TIMEOUT_SECS", default_value_t = 30, value_parser = config_syntax::parse_secs)]
    pub runner_drain_timeout_secs: u64,
    /// Most connections open at once on each runner port; further ones wait in the listen
    /// backlog (idle clients cannot exhaust the agent's file descriptors).
    #[arg(long, env = "RUNNER_MAX_CONNECTIONS", default_value_t = 256)]
    pub runner_max_connections: usize,
    /// A connection to a runner port must send each request's headers within this (seconds;
    /// slow-loris and idle keep-alive connections are closed after it).
    #[arg(long, env = "RUNNER_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = config_syntax::parse_secs)]
    pub runner_header_read_timeout_secs: u64,
    /// Media tools.
    #[command(flatten)]
    pub media: MediaArgs,
    /// Download and tool limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// One runner instance to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlan {
    /// `runner_instance_id` (0-based).
    pub index: usize,
    /// The port it listens on (base port + index).
    pub port: u16,
    /// The task types it registers.
    pub task_types: Vec<TaskType>,
}

/// A configuration the runner layer cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl RunnerConfig {
    /// The Manager's base URL, without a trailing `/`.
    pub fn manager_base(&self) -> Option<String> {
        self.manager_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_owned())
    }

    /// Where completion callbacks may go (`MANAGER_CALLBACK_ORIGINS`, else `MANAGER_URL`'s origin).
    pub fn callback_origins(&self) -> Result<CallbackOrigins, ConfigError> {
        CallbackOrigins::new(
            &self.manager_callback_origins,
            &self.manager_base().unwrap_or_default(),
        )
        .map_err(ConfigError)
    }

    /// The token, refused when missing or a placeholder.
    pub fn checked_token(&self) -> Result<String, ConfigError> {
        let token = self
            .runner_token
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if token.is_empty() {
            return Err(ConfigError(
                "RUNNER_TOKEN is not set: the Manager and the runner must share a token".to_owned(),
            ));
        }
        // The message never repeats the token: it is a secret, and this line goes to the log.
        if let Some(word) = config_syntax::placeholder_word(token) {
            return Err(ConfigError(format!(
                "RUNNER_TOKEN is a placeholder (it contains `{word}`): set a real secret token"
            )));
        }
        Ok(token.to_owned())
    }

    /// The instances to start, from `RUNNER_TASK_TYPES`, `RUNNER_INSTANCES` and the base port.
    pub fn instances(&self) -> Result<Vec<InstancePlan>, ConfigError> {
        let groups = parse_task_types(&self.runner_task_types, self.runner_instances)?;
        groups
            .into_iter()
            .enumerate()
            .map(|(index, task_types)| {
                let port = u16::try_from(index)
                    .ok()
                    .and_then(|i| self.runner_base_port.checked_add(i))
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "instance {index}: port {} + {index} is out of range",
                            self.runner_base_port
                        ))
                    })?;
                Ok(InstancePlan {
                    index,
                    port,
                    task_types,
                })
            })
            .collect()
    }

    /// `{RUNNER_BASE_NAME}-{RUNNER_HOST}-{port}`.
    pub fn runner_id(&self, port: u16) -> String {
        format!("{}-{}-{port}", self.runner_base_name, self.runner_host)
    }

    /// The URL the Manager reaches an instance at.
    pub fn runner_url(&self, port: u16) -> String {
        format!("{}://{}:{port}", self.runner_protocol, self.runner_host)
    }

    /// Checks what can be checked before binding anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked_token()?;
        let manager = self.manager_base().unwrap_or_default();
        let parsed = reqwest::Url::parse(&manager)
            .map_err(|e| ConfigError(format!("MANAGER_URL `{manager}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError(format!(
                "MANAGER_URL `{manager}` must be http(s)"
            )));
        }
        self.callback_origins()?;
        if !matches!(self.runner_protocol.as_str(), "http" | "https") {
            return Err(ConfigError(format!(
                "RUNNER_PROTOCOL must be http or https, not `{}`",
                self.runner_protocol
            )));
        }
        if self.runner_host.is_empty()
            || self.runner_host.contains(|c: char| {
                c == '/' || c == '@' || c == '?' || c == '#' || c.is_whitespace()
            })
        {
            return Err(ConfigError(format!(
                "RUNNER_HOST `{}` must be a bare host name",
                self.runner_host
            )));
        }
        if !regex::Regex::new(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)")
            .expect("valid regex")
            .is_match(&self.runner_protocol_version)
        {
            return Err(ConfigError(format!(
                "RUNNER_PROTOCOL_VERSION `{}` is not MAJOR.MINOR[.PATCH]",
                self.runner_protocol_version
            )));
        }
        let limits = &self.limits;
        if !(limits.max_task_disk_gb.is_finite() && limits.max_task_disk_gb > 0.0) {
            return Err(ConfigError(format!(
                "MAX_TASK_DISK_GB must be a positive number of GB, not {}",
                limits.max_task_disk_gb
            )));
        }
        if !(limits.min_free_disk_gb.is_finite() && limits.min_free_disk_gb >= 0.0) {
            return Err(ConfigError(format!(
                "MIN_FREE_DISK_GB must be 0 or more GB, not {}",
                limits.min_free_disk_gb
            )));
        }
        if self.runner_header_read_timeout_secs == 0 || self.runner_max_connections == 0 {
            return Err(ConfigError(
                "RUNNER_HEADER_READ_TIMEOUT_SECS and RUNNER_MAX_CONNECTIONS must be at least 1"
                    .to_owned(),
            ));
        }
        if self.runner_heartbeat_secs == 0 {
            return Err(ConfigError(
                "RUNNER_HEARTBEAT_SECS must be at least 1".to_owned(),
            ));
        }
        self.instances().map(|_| ())
    }
}

/// Parses `RUNNER_TASK_TYPES`: grouped (`[2x(a,b),1x(c)]`, when it matches `\d+\s*[xX]\s*\(`)
/// gives one entry per group member; otherwise a CSV list shared by `instances` instances.
pub fn parse_task_types(text: &str, instances: usize) -> Result<Vec<Vec<TaskType>>, ConfigError> {
    let grouped = regex::Regex::new(r"\d+\s*[xX]\s*\(").expect("valid regex");
    if !grouped.is_match(text) {
        if instances == 0 {
            return Err(ConfigError(
                "RUNNER_INSTANCES must be at least 1".to_owned(),
            ));
        }
        let types = parse_type_list(text)?;
        return Ok(vec![types; instances]);
    }
    let mut body = text.trim();
    if let Some(inner) = body.strip_prefix('[') {
        body = inner
            .strip_suffix(']')
            .ok_or_else(|| ConfigError(format!("RUNNER_TASK_TYPES `{text}`: '[' without ']'")))?;
    }
    let group = regex::Regex::new(r"^\s*(\d+)\s*[xX]\s*\(([^()]*)\)\s*(,|$)").expect("valid regex");
    let mut instances = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let captures = group.captures(rest).ok_or_else(|| {
            ConfigError(format!(
                "RUNNER_TASK_TYPES `{text}`: expected groups like 2x(encoding,studio) at `{rest}`"
            ))
        })?;
        let count: usize = captures[1]
            .parse()
            .map_err(|_| ConfigError(format!("RUNNER_TASK_TYPES `{text}`: bad multiplier")))?;
        if count == 0 {
            return Err(ConfigError(format!(
                "RUNNER_TASK_TYPES `{text}`: multipliers must be at least 1"
            )));
        }
        let types = parse_type_list(&captures[2])?;
        instances.extend(std::iter::repeat_n(types, count));
        let consumed = captures.get(0).map_or(rest.len(), |m| m.end());
        rest = rest[consumed..].trim_start();
    }
    if instances.is_empty() {
        return Err(ConfigError(format!(
            "RUNNER_TASK_TYPES `{text}` has no group"
        )));
    }
    Ok(instances)
}

fn parse_type_list(text: &str) -> Result<Vec<TaskType>, ConfigError> {
    let mut types = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let task_type = TaskType::parse(name).ok_or_else(|| {
            ConfigError(format!(
                "RUNNER_TASK_TYPES: unknown task type `{name}` (known: encoding, studio, transcription)"
            ))
        })?;
        if !types.contains(&task_type) {
            types.push(task_type);
        }
    }
    if types.is_empty() {
        return Err(ConfigError(format!(
            "RUNNER_TASK_TYPES `{text}` names no task type"
        )));
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskType::{Encoding as E, Studio as S, Transcription as T};

    #[test]
    fn grouped_and_legacy_task_types() {
        assert_eq!(
            parse_task_types("[2x(encoding,studio,transcription),1x(transcription)]", 1),
            Ok(vec![vec![E, S, T], vec![E, S, T], vec![T]])
        );
        assert_eq!(
            parse_task_types("1X (encoding, studio), 2 x(transcription)", 9),
            Ok(vec![vec![E, S], vec![T], vec![T]])
        );
        assert_eq!(
            parse_task_types("encoding,transcription", 2),
            Ok(vec![vec![E, T]; 2])
        );
        for bad in [
            "[0x(encoding)]",
            "[2x(encoding)",
            "2x(encoding),oops",
            "2x(encodng)",
            "2x()",
            "",
            "video",
        ] {
            assert!(parse_task_types(bad, 1).is_err(), "`{bad}`");
        }
        assert!(parse_task_types("encoding", 0).is_err());
    }
}
