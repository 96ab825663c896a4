//! The task types of ESUP runner 1.7: the one list of them (configuration, registration,
//! metrics and `task run` all use [`TaskType::ALL`]).

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
    /// Studio takes its own keys plus every encoding key (it ends with an encoding).
    pub fn allowed_parameters(self) -> Vec<&'static str> {
        const ENCODING: &[&str] = &[
            "rendition",
            "cut",
            "dressing",
            "video_id",
            "video_slug",
            "video_title",
        ];
        const STUDIO_OWN: &[&str] = &[
            "presenter",
            "force_cpu",
            "studio_crf",
            "studio_preset",
            "studio_audio_bitrate",
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
            TaskType::Encoding => ENCODING.to_vec(),
            TaskType::Studio => [STUDIO_OWN, ENCODING].concat(),
            TaskType::Transcription => TRANSCRIPTION.to_vec(),
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
