//! What every task pipeline (encoding, studio, transcription) gets and returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::error::TaskError;
use crate::process::ProcessRunner;
use crate::source::SourceFetcher;

/// Parameters of a task, as the Manager sent them (already checked for unknown keys).
#[derive(Debug, Clone, Default)]
pub struct Parameters(pub serde_json::Map<String, Value>);

impl Parameters {
    /// The parameter as text: strings as they are, numbers and booleans printed; `None` when
    /// absent, `null` or an empty string.
    pub fn text(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.trim().to_owned()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            other => Some(other.to_string()),
        }
    }

    /// The parameter as a boolean (`true`/`1`/`yes`/`on`, any case); `None` when absent.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.text(key)
            .map(|t| matches!(t.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
    }

    /// A parameter that holds JSON (ESUP sends `rendition`, `cut`, `dressing` as JSON *strings*;
    /// an object is accepted too). `Ok(None)` when absent or empty.
    pub fn json(&self, key: &str) -> Result<Option<Value>, TaskError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| TaskError::BadInput(format!("parameter {key}: not valid JSON: {e}"))),
            Some(other) => Ok(Some(other.clone())),
        }
    }
}

/// CPU (libx264) or GPU (NVENC/CUDA) encoding (`ENCODING_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingType {
    /// libx264 / aac.
    #[default]
    Cpu,
    /// h264_nvenc with CUDA decoding and scaling.
    Gpu,
}

/// Tools and settings the pipelines use (from the runner configuration).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// `ffmpeg` executable (`FFMPEG_PATH`, default `ffmpeg` on `PATH`).
    pub ffmpeg: PathBuf,
    /// `ffprobe` executable (`FFPROBE_PATH`, default `ffprobe` on `PATH`).
    pub ffprobe: PathBuf,
    /// `ENCODING_TYPE`.
    pub encoding_type: EncodingType,
    /// Python of the Whisper venv (`WHISPER_PYTHON`).
    pub whisper_python: PathBuf,
    /// Default model name (`WHISPER_MODEL`; the packaged multilingual `base` by default).
    pub whisper_model: String,
    /// Default language (`WHISPER_LANGUAGE`; `auto` detects).
    pub whisper_language: String,
    /// Where larger CTranslate2 models live, one directory per model name (`WHISPER_MODELS_DIR`).
    pub whisper_models_dir: Option<PathBuf>,
    /// `WHISPER_DEVICE` (`cpu`, `cuda`, `auto`).
    pub whisper_device: String,
}

/// Progress of the running task in percent (0..=100), shown by `/task/status` and the
/// `worker_task_progress_percent` metric.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU32>);

impl Progress {
    /// Sets the progress, clamped to 0..=100 (stored as hundredths of a percent).
    pub fn set(&self, percent: f64) {
        let clamped = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        // Truncation is intended: hundredths of a percent are plenty.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.0.store((clamped * 100.0) as u32, Ordering::Relaxed);
    }

    /// The progress in percent.
    pub fn get(&self) -> f64 {
        f64::from(self.0.load(Ordering::Relaxed)) / 100.0
    }
}

/// Everything a pipeline needs for one task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task id (validated: `^[A-Za-z0-9_-]+$`).
    pub task_id: String,
    /// `STORAGE_DIR/<task_id>`: the only directory a task writes to.
    pub workspace: PathBuf,
    /// `STORAGE_DIR/<task_id>/output`: what `manifest.json` lists and `/task/result` serves.
    pub output_dir: PathBuf,
    /// The downloaded `source_url` (for `studio`, the mediapackage XML), inside `workspace`.
    pub source: PathBuf,
    /// The last path segment of `source_url`, percent-decoded (the `stem` comes from it).
    pub source_name: String,
    /// The task's parameters.
    pub parameters: Parameters,
    /// Tools and settings.
    pub media: Arc<MediaConfig>,
    /// Runs external tools in their own process group, killable by `/task/stop`, bounded by
    /// the script timeout, logging to `info_script.log` / `error_script.log`.
    pub process: ProcessRunner,
    /// Progress, for `/task/status` and the metric.
    pub progress: Progress,
    /// Downloads more inputs with the same limits as `source_url` (studio tracks).
    pub fetcher: SourceFetcher,
}

/// What a pipeline returns on success: the `script_output` text for the completion call.
pub type PipelineResult = Result<String, TaskError>;
