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
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::TaskError;
use crate::paths::output_stem;
use crate::pipeline::{PipelineResult, TaskContext};

pub mod models;
mod request;
mod subtitles;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
mod whisper;

use request::Request;
use subtitles::{cues, srt, webvtt};
use whisper::{run_whisper, Transcript};

/// Sub-directory of the workspace for the intermediate files (script, WAV, result JSON), apart
/// from the downloaded source and from `output/`.
const WORK_DIR: &str = "transcription";

/// Progress (percent) reached when the audio is extracted, and when Whisper is done; the rest is
/// writing the files.
pub(super) const AUDIO_DONE: f64 = 10.0;
pub(super) const WHISPER_DONE: f64 = 95.0;

/// EBU R128 loudness normalisation: -23 LUFS integrated, 7 LU range, -2 dBTP peak (one pass,
/// ffmpeg's dynamic mode). Quiet lecture recordings gain the most.
const LOUDNORM: &str = "loudnorm=I=-23:LRA=7:TP=-2";

const PROBE_LABEL: &str = "ffprobe";
const AUDIO_LABEL: &str = "ffmpeg audio";

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

pub(super) fn missing_python(configured: &Path) -> String {
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
