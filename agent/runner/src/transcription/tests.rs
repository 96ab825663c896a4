//! The pipeline with the real tools: ffmpeg, espeak-ng and the Whisper venv.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::testkit::{media, params};
use super::*;
use crate::pipeline::{MediaConfig, Progress};
use crate::process::ProcessRunner;
use crate::source::{SourceFetcher, SourceLimits};

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

#[test]
fn ffmpeg_progress_lines() {
    assert_eq!(ffmpeg_out_time("out_time_us=2500000"), Some(2.5));
    assert_eq!(ffmpeg_out_time("out_time_us=-9223372036854775807"), None);
    assert_eq!(ffmpeg_out_time("progress=continue"), None);
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
    let timing = regex::Regex::new(r"(?m)^\d{2}:\d{2}:\d{2}\.\d{3} --> \d{2}:\d{2}:\d{2}\.\d{3}$")
        .expect("regex");
    assert!(timing.is_match(&vtt), "no cue timings: {vtt}");
    assert_heard(&vtt, "the WebVTT");
    assert!(!ctx.output_dir.join("Emission_test.srt").exists());
    let info: Value =
        serde_json::from_str(&read(&ctx.output_dir.join("info_video.json"))).expect("json");
    assert_eq!(info["language"], "en");
    assert_eq!(info["model"], "tiny.en");
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
    let first_cue = regex::Regex::new(r"^1\n\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}\n")
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
    // model.bin and a manifest are there (the agent's check passes) but not tokenizer.json,
    // which faster-whisper would otherwise try to download: the script itself refuses.
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("custom")).expect("model dir");
    std::fs::write(models.join("custom/model.bin"), b"not a model").expect("model.bin");
    std::fs::write(
        models.join("custom").join(models::MANIFEST),
        json!({"files": {"model.bin": {"sha256": "0".repeat(64)}}}).to_string(),
    )
    .expect("manifest");
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
