//! Configuration of the ESUP runner layer: the Python runner's environment variables (also read
//! from `.env`), each also a flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::pipeline::{EncodingType, MediaConfig};
use super::source::SourceLimits;

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
    /// Default Whisper model (`tiny.en` is packaged in the venv; others from `WHISPER_MODELS_DIR`).
    #[arg(long, env = "WHISPER_MODEL", default_value = "tiny.en")]
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
        other => Err(format!("ENCODING_TYPE must be CPU or GPU, not {other:?}")),
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
    /// Connect timeout of source downloads (seconds).
    #[arg(long, env = "SOURCE_CONNECT_TIMEOUT_SECS", default_value_t = 10)]
    pub source_connect_timeout_secs: u64,
    /// Longest silence while downloading a source (seconds).
    #[arg(long, env = "SOURCE_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub source_read_timeout_secs: u64,
    /// Longest run of a task's tools, download included ("Script timeout after N seconds").
    #[arg(long, env = "EXTERNAL_SCRIPT_TIMEOUT_SECONDS", default_value_t = 18000)]
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

    /// The script timeout.
    pub fn script_timeout(&self) -> Duration {
        Duration::from_secs(self.external_script_timeout_seconds)
    }
}
