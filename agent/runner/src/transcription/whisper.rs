//! Running `agent/runner/whisper/transcribe.py`: its arguments, the JSON lines it prints and the
//! result file it writes.

use std::ffi::OsString;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::models::REGISTRY_JSON;
use super::request::Request;
use super::{missing_python, AUDIO_DONE, WHISPER_DONE};
use crate::error::TaskError;
use crate::pipeline::TaskContext;

/// The script, from the same commit as this binary (see the module documentation).
const SCRIPT: &str = include_str!("../../whisper/transcribe.py");

pub(super) const WHISPER_LABEL: &str = "whisper";

/// A line the script prints on stdout (see the script's documentation).
#[derive(Debug, Clone, PartialEq)]
enum ScriptLine {
    /// Fraction of the audio done.
    Progress(f64),
    /// The request cannot be served (`bad_input`) or the installation is broken.
    Error { bad_input: bool, message: String },
    /// Anything else (language found, ...): logged, not used.
    Other,
}

fn parse_script_line(line: &str) -> ScriptLine {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line.trim()) else {
        return ScriptLine::Other;
    };
    if let Some(fraction) = fields.get("progress").and_then(Value::as_f64) {
        return ScriptLine::Progress(fraction);
    }
    if let Some(message) = fields.get("error").and_then(Value::as_str) {
        return ScriptLine::Error {
            bad_input: fields.get("kind").and_then(Value::as_str) == Some("bad_input"),
            message: message.to_owned(),
        };
    }
    ScriptLine::Other
}

/// Runs the embedded script; its structured error, when it printed one, becomes the task error.
pub(super) async fn run_whisper(
    ctx: &TaskContext,
    python: &Path,
    request: &Request,
    work: &Path,
    wav: &Path,
    result: &Path,
) -> Result<(), TaskError> {
    let script = work.join("transcribe.py");
    tokio::fs::write(&script, SCRIPT)
        .await
        .map_err(|e| TaskError::io("cannot write", &script, &e))?;
    // The model registry, which the script reads beside itself (the same table as the agent's).
    let registry = work.join("models.json");
    tokio::fs::write(&registry, REGISTRY_JSON)
        .await
        .map_err(|e| TaskError::io("cannot write", &registry, &e))?;
    let _ = tokio::fs::remove_file(result).await;
    // -I: isolated mode, so PYTHONPATH, PYTHONHOME or a user site-packages of the agent's
    // environment cannot change what the venv runs.
    let mut args: Vec<OsString> = vec!["-I".into(), script.into_os_string()];
    args.extend(["--audio".into(), wav.as_os_str().to_owned()]);
    args.extend(["--output".into(), result.as_os_str().to_owned()]);
    args.extend(["--model".into(), OsString::from(&request.model)]);
    if let Some(dir) = &request.model_dir {
        args.extend(["--model-dir".into(), dir.as_os_str().to_owned()]);
    }
    args.extend(["--language".into(), request.language.as_arg().into()]);
    let task = if request.translate {
        "translate"
    } else {
        "transcribe"
    };
    args.extend(["--task".into(), task.into()]);
    args.extend(["--device".into(), OsString::from(&request.device)]);

    let progress = ctx.progress.clone();
    let mut reported: Option<ScriptLine> = None;
    let mut on_line = |line: &str| match parse_script_line(line) {
        ScriptLine::Progress(fraction) => {
            progress.set(AUDIO_DONE + (WHISPER_DONE - AUDIO_DONE) * fraction.clamp(0.0, 1.0));
        }
        error @ ScriptLine::Error { .. } => reported = Some(error),
        ScriptLine::Other => {}
    };
    let outcome = ctx
        .process
        .run(WHISPER_LABEL, python, &args, Some(&mut on_line))
        .await;
    match (outcome, reported) {
        (Ok(_), _) => Ok(()),
        (Err(TaskError::Failed(_)), Some(ScriptLine::Error { bad_input, message })) => {
            Err(if bad_input {
                TaskError::BadInput(message)
            } else {
                TaskError::Failed(format!("whisper: {message}"))
            })
        }
        (Err(TaskError::Failed(message)), _)
            if message.starts_with(&format!("{WHISPER_LABEL}: cannot start")) =>
        {
            Err(TaskError::Failed(format!(
                "{message}; {}",
                missing_python(&ctx.media.whisper_python)
            )))
        }
        (Err(error), _) => Err(error),
    }
}

/// What the script writes to its result file.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Transcript {
    pub(super) model: String,
    pub(super) model_path: String,
    pub(super) language: String,
    pub(super) language_probability: f64,
    pub(super) language_detected: bool,
    pub(super) task: String,
    pub(super) duration: f64,
    #[serde(default)]
    pub(super) duration_after_vad: f64,
    #[serde(default)]
    pub(super) engine: Value,
    pub(super) segments: Vec<Segment>,
}

/// One Whisper segment (seconds).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(super) struct Segment {
    pub(super) start: f64,
    pub(super) end: f64,
    pub(super) text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lines_and_ffmpeg_progress() {
        assert_eq!(
            parse_script_line(r#"{"progress": 0.42}"#),
            ScriptLine::Progress(0.42)
        );
        assert_eq!(
            parse_script_line(r#"{"error": "no such language", "kind": "bad_input"}"#),
            ScriptLine::Error {
                bad_input: true,
                message: "no such language".to_owned()
            }
        );
        assert_eq!(
            parse_script_line(r#"{"error": "broken", "kind": "failed"}"#),
            ScriptLine::Error {
                bad_input: false,
                message: "broken".to_owned()
            }
        );
        for other in [r#"{"language": "en"}"#, "not json", "[1]", ""] {
            assert_eq!(parse_script_line(other), ScriptLine::Other, "{other}");
        }
    }
}
