//! The ESUP runner layer: the protocol of EsupPortail's Python runner 1.7 (see
//! `shared/esup-runner-protocol.md`), so an unchanged ESUP Manager registers this agent,
//! dispatches tasks to it and fetches their results.
//!
//! - [`config`]: `RUNNER_*`, `MANAGER_URL`, `STORAGE_DIR`, ... and grouped `RUNNER_TASK_TYPES`.
//! - [`api`]: the HTTP routes of one runner instance (`/runner/*`, `/task/*`).
//! - [`manager`]: register, heartbeat, reconnect, completion callbacks with retries.
//! - [`registry`]: the tasks of one instance (one at a time), their status, stop, results.
//! - [`source`]: downloads of `source_url`; [`process`]: tools in their own process group.
//! - [`encoding`], [`studio`], [`transcription`]: the pipelines, with the real tools.
//! - [`cleanup`]: removal of old task directories.

pub mod api;
pub mod cleanup;
pub mod config;
pub mod encoding;
pub mod local;
pub mod manager;
pub mod media;
pub mod paths;
pub mod pipeline;
pub mod process;
pub mod registry;
pub mod source;
pub mod studio;
pub mod transcription;

use std::fmt;

/// The task types of ESUP runner 1.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    /// Video/audio encoding: HLS + MP4 ladder, audio, thumbnails, overview.
    Encoding,
    /// Opencast studio recording: composite of presenter and presentation, then encoding.
    Studio,
    /// Whisper transcription to WebVTT (and SRT).
    Transcription,
}

impl TaskType {
    /// All task types.
    pub const ALL: [TaskType; 3] = [
        TaskType::Encoding,
        TaskType::Studio,
        TaskType::Transcription,
    ];

    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Encoding => "encoding",
            TaskType::Studio => "studio",
            TaskType::Transcription => "transcription",
        }
    }

    /// Parses a protocol name.
    pub fn parse(name: &str) -> Option<TaskType> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == name.trim().to_ascii_lowercase())
    }

    /// Parameter keys a task of this type accepts; any other key is refused with 422.
    pub fn allowed_parameters(self) -> &'static [&'static str] {
        const ENCODING: &[&str] = &[
            "rendition",
            "cut",
            "dressing",
            "video_id",
            "video_slug",
            "video_title",
        ];
        const STUDIO: &[&str] = &[
            "presenter",
            "force_cpu",
            "studio_crf",
            "studio_preset",
            "studio_audio_bitrate",
            "rendition",
            "cut",
            "dressing",
            "video_id",
            "video_slug",
            "video_title",
        ];
        const TRANSCRIPTION: &[&str] = &[
            "language",
            "source_language",
            "model",
            "normalize",
            "format",
            "model_type",
            "duration",
            "video_id",
            "video_slug",
            "video_title",
        ];
        match self {
            TaskType::Encoding => ENCODING,
            TaskType::Studio => STUDIO,
            TaskType::Transcription => TRANSCRIPTION,
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
