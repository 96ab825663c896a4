//! What the transcription unit tests share.

use std::path::PathBuf;

use serde_json::Value;

use crate::pipeline::{EncodingType, MediaConfig, Parameters};

/// The media configuration of the tests: the English-only packaged model by default, as an
/// agent with `WHISPER_MODEL=tiny.en`.
pub(crate) fn media(python: PathBuf) -> MediaConfig {
    MediaConfig {
        ffmpeg: "ffmpeg".into(),
        ffprobe: "ffprobe".into(),
        encoding_type: EncodingType::Cpu,
        whisper_python: python,
        whisper_model: "tiny.en".to_owned(),
        whisper_language: "auto".to_owned(),
        whisper_models_dir: None,
        whisper_device: "cpu".to_owned(),
    }
}

pub(crate) fn params(value: Value) -> Parameters {
    match value {
        Value::Object(map) => Parameters(map),
        other => panic!("parameters must be an object, not {other}"),
    }
}
