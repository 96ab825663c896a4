//! A `transcription` task's parameters, checked and resolved against the configuration.

use std::path::PathBuf;

use super::models::{self, MULTILINGUAL_PACKAGED};
use crate::error::TaskError;
use crate::pipeline::{MediaConfig, Parameters};

/// A language as the parameters give it: detect it, or an ISO 639-1 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Language {
    Auto,
    Code(String),
}

impl Language {
    /// `auto`, or a code: `fr`, `FR`, `fr-FR` and `fr_FR` are all `fr` (Whisper knows no region).
    fn parse(what: &str, text: &str) -> Result<Language, String> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "auto" {
            return Ok(Language::Auto);
        }
        let primary = lower.split(['-', '_']).next().unwrap_or_default();
        if (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()) {
            Ok(Language::Code(primary.to_owned()))
        } else {
            Err(format!(
                "{what}: {text:?} is not a language (auto, or an ISO 639-1 code such as en or fr)"
            ))
        }
    }

    pub(super) fn as_arg(&self) -> &str {
        match self {
            Language::Auto => "auto",
            Language::Code(code) => code,
        }
    }
}

/// The output formats besides WebVTT, which is always written (the Manager expects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Formats {
    pub(super) srt: bool,
}

impl Formats {
    /// `vtt` (default), `srt`, a list (`vtt,srt`, `vtt srt`, `vtt+srt`), `all` or `both`.
    fn parse(text: Option<&str>) -> Result<Formats, TaskError> {
        let mut formats = Formats::default();
        for item in text
            .unwrap_or("vtt")
            .split([',', ' ', '+', ';', '/'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match item.to_ascii_lowercase().as_str() {
                "vtt" | "webvtt" => {}
                "srt" | "all" | "both" => formats.srt = true,
                _ => {
                    return Err(TaskError::BadInput(format!(
                        "parameter format: unknown format {item:?} (accepted: vtt, srt, vtt,srt, \
                         all, both; vtt is always written)"
                    )))
                }
            }
        }
        Ok(formats)
    }
}

/// A task's parameters, checked and resolved against the configuration.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Request {
    /// Model name (`model`, else `WHISPER_MODEL`).
    pub(super) model: String,
    /// Its directory under `WHISPER_MODELS_DIR`; `None` for the packaged model.
    pub(super) model_dir: Option<PathBuf>,
    /// The spoken language given to Whisper.
    pub(super) language: Language,
    /// Whisper's `translate` task (speech in another language, English subtitles).
    pub(super) translate: bool,
    pub(super) normalize: bool,
    pub(super) formats: Formats,
    /// `duration`: what the caller says the media lasts (seconds); progress uses it when
    /// ffprobe cannot tell.
    pub(super) expected_duration: Option<f64>,
    /// `WHISPER_DEVICE`.
    pub(super) device: String,
}

impl Request {
    pub(super) fn new(parameters: &Parameters, media: &MediaConfig) -> Result<Request, TaskError> {
        let bad = TaskError::BadInput;

        if let Some(model_type) = parameters.text("model_type") {
            let lower = model_type.to_ascii_lowercase();
            if !matches!(
                lower.as_str(),
                "whisper" | "faster-whisper" | "faster_whisper" | "ctranslate2"
            ) {
                return Err(bad(format!(
                    "parameter model_type: {model_type:?} is not supported: this runner \
                     transcribes with Whisper (faster-whisper); accepted: whisper, \
                     faster-whisper, ctranslate2"
                )));
            }
        }

        let (model, from) = match parameters.text("model") {
            Some(model) => (model, "parameter model"),
            None => (media.whisper_model.trim().to_owned(), "WHISPER_MODEL"),
        };
        // A packaged model, or a provisioned one; anything else fails here, naming the model
        // and the provisioning command (never another model instead).
        let choice = models::resolve(&model, from, media.whisper_models_dir.as_deref())?;

        let configured = Language::parse("WHISPER_LANGUAGE", &media.whisper_language)
            .map_err(TaskError::Failed)?;
        let language = parameters
            .text("language")
            .map(|t| Language::parse("parameter language", &t))
            .transpose()
            .map_err(bad)?;
        let source = parameters
            .text("source_language")
            .map(|t| Language::parse("parameter source_language", &t))
            .transpose()
            .map_err(bad)?;
        // `source_language` is what is spoken, `language` what the subtitles are in; either alone
        // is the spoken language. Whisper translates only into English.
        let (spoken, translate) = match (source, language) {
            (Some(Language::Code(source)), Some(Language::Code(target))) if source != target => {
                if target != "en" {
                    return Err(bad(format!(
                        "parameters source_language={source} and language={target}: Whisper \
                         translates only into English (language=en), or use the same language \
                         for both"
                    )));
                }
                (Language::Code(source), true)
            }
            (Some(Language::Code(source)), _) => (Language::Code(source), false),
            (_, Some(language)) => (language, false),
            (source, None) => (source.unwrap_or(configured), false),
        };
        // An English-only model (`*.en`) with another language is refused, never switched to
        // another model behind the caller's back. The script checks the loaded model itself
        // too; this only fails early (before the audio extraction).
        let english_only = choice.multilingual == Some(false) || choice.name.ends_with(".en");
        if let Language::Code(code) = &spoken {
            if english_only && code != "en" {
                return Err(bad(format!(
                    "model {} is English-only: language {code} needs a multilingual model \
                     (model={MULTILINGUAL_PACKAGED} is packaged; small, medium, large, turbo \
                     once provisioned)",
                    choice.name
                )));
            }
        }

        let normalize = match parameters.text("normalize") {
            None => false,
            Some(text) => parse_bool(&text).ok_or_else(|| {
                bad(format!(
                    "parameter normalize: {text:?} is not a boolean (true/false, 1/0, yes/no)"
                ))
            })?,
        };
        let formats = Formats::parse(parameters.text("format").as_deref())?;
        let expected_duration = match parameters.text("duration") {
            None => None,
            Some(text) => Some(parse_duration(&text).ok_or_else(|| {
                bad(format!(
                    "parameter duration: {text:?} is not a duration (seconds, or HH:MM:SS)"
                ))
            })?),
        };
        let device = media.whisper_device.trim().to_ascii_lowercase();
        if !matches!(device.as_str(), "cpu" | "cuda" | "auto") {
            return Err(TaskError::Failed(format!(
                "WHISPER_DEVICE={:?}: expected cpu, cuda or auto",
                media.whisper_device
            )));
        }
        Ok(Request {
            model: choice.name,
            model_dir: choice.dir,
            language: spoken,
            translate,
            normalize,
            formats,
            expected_duration,
            device,
        })
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Seconds (`95`, `95.5`) or `[[HH:]MM:]SS[.fff]`; never negative.
fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    let mut seconds = 0.0;
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        // Only the seconds may have a fraction; hours and minutes are whole numbers.
        if part.is_empty() || (!last && !part.bytes().all(|b| b.is_ascii_digit())) {
            return None;
        }
        let value: f64 = part.parse().ok()?;
        if !value.is_finite() || value < 0.0 || (parts.len() > 1 && i > 0 && value >= 60.0) {
            return None;
        }
        seconds = seconds * 60.0 + value;
    }
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::transcription::testkit::{media, params};

    fn request(value: Value) -> Result<Request, TaskError> {
        Request::new(&params(value), &media("python3".into()))
    }

    fn bad_input(result: Result<Request, TaskError>) -> String {
        match result {
            Err(TaskError::BadInput(message)) => message,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    #[test]
    fn defaults_come_from_the_configuration() {
        let request = request(json!({})).expect("defaults");
        assert_eq!(
            request,
            Request {
                model: "tiny.en".to_owned(),
                model_dir: None,
                language: Language::Auto,
                translate: false,
                normalize: false,
                formats: Formats { srt: false },
                expected_duration: None,
                device: "cpu".to_owned(),
            }
        );
        let mut configured = media("python3".into());
        configured.whisper_language = "EN".to_owned();
        let request = Request::new(&params(json!({})), &configured).expect("configured");
        assert_eq!(request.language, Language::Code("en".to_owned()));
        configured.whisper_language = "english please".to_owned();
        let error = Request::new(&params(json!({})), &configured).expect_err("bad config");
        assert!(
            matches!(&error, TaskError::Failed(m) if m.contains("WHISPER_LANGUAGE")),
            "{error:?}"
        );
        configured.whisper_language = "auto".to_owned();
        configured.whisper_device = "tpu".to_owned();
        let error = Request::new(&params(json!({})), &configured).expect_err("bad device");
        assert!(
            matches!(&error, TaskError::Failed(m) if m.contains("WHISPER_DEVICE")),
            "{error:?}"
        );
    }

    #[test]
    fn formats_accepted_and_refused() {
        for (text, srt) in [
            (None, false),
            (Some("vtt"), false),
            (Some("WebVTT"), false),
            (Some("srt"), true),
            (Some("vtt,srt"), true),
            (Some("vtt, srt"), true),
            (Some("srt+vtt"), true),
            (Some("all"), true),
            (Some("Both"), true),
        ] {
            assert_eq!(
                Formats::parse(text).expect("format"),
                Formats { srt },
                "{text:?}"
            );
        }
        let message = bad_input(request(json!({"format": "vtt,pdf"})));
        assert!(
            message.contains("\"pdf\"") && message.contains("accepted"),
            "{message}"
        );
    }

    #[test]
    fn languages_and_translation() {
        let spoken = |value: Value| request(value).map(|r| (r.language, r.translate));
        let code = |c: &str| Language::Code(c.to_owned());
        assert_eq!(
            spoken(json!({"language": "auto"})),
            Ok((Language::Auto, false))
        );
        assert_eq!(
            spoken(json!({"language": "en-GB"})),
            Ok((code("en"), false))
        );
        assert_eq!(
            spoken(json!({"source_language": "EN_us"})),
            Ok((code("en"), false))
        );
        assert_eq!(
            spoken(json!({"source_language": "auto", "language": "en"})),
            Ok((code("en"), false))
        );
        let message = bad_input(request(json!({"language": "english!"})));
        assert!(message.contains("parameter language"), "{message}");

        // Another spoken language needs a multilingual model; with one, English subtitles of
        // French speech are Whisper's translate task, and only English is a target.
        let message = bad_input(request(json!({"language": "fr"})));
        assert!(
            message.contains("English-only") && message.contains("fr"),
            "{message}"
        );
        let models = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(models.path().join("small")).expect("model dir");
        std::fs::write(models.path().join("small/model.bin"), b"weights").expect("model.bin");
        std::fs::write(models.path().join("small").join(models::MANIFEST), b"{}")
            .expect("manifest");
        let mut configured = media("python3".into());
        configured.whisper_models_dir = Some(models.path().to_owned());
        let multilingual = |value: Value| {
            let mut map = params(value);
            map.0.insert("model".to_owned(), json!("small"));
            Request::new(&map, &configured)
        };
        let translated =
            multilingual(json!({"source_language": "fr", "language": "en"})).expect("translate");
        assert_eq!(
            (translated.language, translated.translate),
            (code("fr"), true)
        );
        assert_eq!(
            translated.model_dir,
            Some(models.path().join("small")),
            "the model loads from WHISPER_MODELS_DIR"
        );
        let same = multilingual(json!({"source_language": "fr", "language": "fr"})).expect("same");
        assert_eq!((same.language, same.translate), (code("fr"), false));
        let message = bad_input(multilingual(
            json!({"source_language": "en", "language": "de"}),
        ));
        assert!(message.contains("only into English"), "{message}");
    }

    #[test]
    fn models_and_model_types() {
        let message = bad_input(request(json!({"model": "small"})));
        assert!(
            message.contains("model small is not provisioned (WHISPER_MODELS_DIR is not set)"),
            "{message}"
        );
        // The packaged multilingual model needs nothing; a model given by the task wins over
        // WHISPER_MODEL.
        let base = request(json!({"model": "base", "language": "fr"})).expect("base");
        assert_eq!((base.model.as_str(), base.model_dir), ("base", None));
        for name in ["../etc", "a/b", ".hidden", "x y"] {
            let message = bad_input(request(json!({ "model": name })));
            assert!(message.contains("not a model name"), "{name}: {message}");
        }
        let models = tempfile::tempdir().expect("tempdir");
        let mut configured = media("python3".into());
        configured.whisper_models_dir = Some(models.path().to_owned());
        let missing = models.path().join("medium");
        let message = bad_input(Request::new(
            &params(json!({"model": "medium"})),
            &configured,
        ));
        assert!(
            message.contains(&missing.display().to_string()),
            "names the missing path: {message}"
        );
        std::fs::create_dir(&missing).expect("empty dir");
        let message = bad_input(Request::new(
            &params(json!({"model": "medium"})),
            &configured,
        ));
        assert!(message.contains("no model.bin"), "{message}");

        for ok in ["whisper", "Faster-Whisper", "ctranslate2"] {
            request(json!({ "model_type": ok })).expect(ok);
        }
        let message = bad_input(request(json!({"model_type": "vosk"})));
        assert!(
            message.contains("vosk") && message.contains("Whisper"),
            "{message}"
        );
    }

    #[test]
    fn normalize_and_duration() {
        for (value, expected) in [
            (json!(true), true),
            (json!("True"), true),
            (json!(1), true),
            (json!("off"), false),
            (json!(false), false),
        ] {
            let r = request(json!({ "normalize": value.clone() })).expect("normalize");
            assert_eq!(r.normalize, expected, "{value}");
        }
        let message = bad_input(request(json!({"normalize": "maybe"})));
        assert!(message.contains("normalize"), "{message}");

        for (value, seconds) in [
            (json!(95), 95.0),
            (json!("95.5"), 95.5),
            (json!("01:02:03"), 3723.0),
            (json!("02:03.5"), 123.5),
            (json!(0), 0.0),
        ] {
            let r = request(json!({ "duration": value.clone() })).expect("duration");
            assert_eq!(r.expected_duration, Some(seconds), "{value}");
        }
        for bad in [json!(-3), json!("abc"), json!("1:99:00"), json!("1:2:3:4")] {
            let message = bad_input(request(json!({ "duration": bad.clone() })));
            assert!(message.contains("duration"), "{bad}: {message}");
        }
    }
}
