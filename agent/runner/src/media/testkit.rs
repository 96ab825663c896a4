//! Test helpers for the media pipelines: real task contexts in a temp dir, media generated with
//! ffmpeg's lavfi sources at test time, ffprobe checks, and a loopback HTTP server for inputs
//! that tasks download.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::pipeline::{EncodingType, MediaConfig, Parameters, Progress, TaskContext};
use crate::process::ProcessRunner;
use crate::source::{SourceFetcher, SourceLimits};

use super::probe::{parse_probe, MediaInfo};

/// A task context whose workspace lives in a temp dir (removed on drop).
#[derive(Debug)]
pub(crate) struct TestTask {
    /// Keeps the directory alive.
    pub _dir: tempfile::TempDir,
    pub ctx: TaskContext,
}

/// A real context: workspace `<tmp>/task`, output `<tmp>/task/output`, real ffmpeg/ffprobe from
/// `PATH`, a fetcher limited to 127.0.0.1, a 120 s script timeout.
pub(crate) fn task(source_name: &str, parameters: serde_json::Value, gpu: bool) -> TestTask {
    task_with_timeout(source_name, parameters, gpu, Duration::from_secs(120))
}

/// [`task`] with another script timeout.
pub(crate) fn task_with_timeout(
    source_name: &str,
    parameters: serde_json::Value,
    gpu: bool,
    timeout: Duration,
) -> TestTask {
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = dir.path().join("task");
    let output_dir = workspace.join("output");
    std::fs::create_dir_all(&output_dir).expect("output dir");
    let parameters = match parameters {
        serde_json::Value::Object(map) => Parameters(map),
        serde_json::Value::Null => Parameters::default(),
        other => panic!("test parameters must be an object, not {other}"),
    };
    let process = ProcessRunner::new(&workspace, timeout, CancellationToken::new());
    // The media server of these tests is on loopback.
    let fetcher = SourceFetcher::with_private_networks(
        SourceLimits {
            max_bytes: 200_000_000,
            allowed_hosts: vec!["127.0.0.1".to_owned()],
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
        },
        true,
    )
    .expect("http client");
    let ctx = TaskContext {
        task_id: "test-task".to_owned(),
        source: workspace.join(source_name),
        workspace,
        output_dir,
        source_name: source_name.to_owned(),
        parameters,
        media: Arc::new(MediaConfig {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            encoding_type: if gpu {
                EncodingType::Gpu
            } else {
                EncodingType::Cpu
            },
            whisper_python: "python3".into(),
            whisper_model: "tiny.en".to_owned(),
            whisper_language: "auto".to_owned(),
            whisper_models_dir: None,
            whisper_device: "cpu".to_owned(),
        }),
        process,
        progress: Progress::default(),
        fetcher,
    };
    TestTask { _dir: dir, ctx }
}

/// Runs `ffmpeg -y <args> <out>` to make test media; panics with ffmpeg's stderr on failure.
pub(crate) fn generate(out: &Path, args: &[&str]) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(out)
        .output()
        .expect("ffmpeg runs (Debian package ffmpeg)");
    assert!(
        output.status.success(),
        "generating {}: {}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `seconds` long `width`x`height` testsrc2 clip, with a 440 Hz sine when `audio`.
pub(crate) fn clip(out: &Path, width: u32, height: u32, seconds: u32, audio: bool) {
    let video = format!("testsrc2=size={width}x{height}:rate=25:duration={seconds}");
    let sine = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if audio {
        args.extend(["-f", "lavfi", "-i", &sine, "-c:a", "aac", "-b:a", "64k"]);
    }
    args.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "32",
        "-pix_fmt",
        "yuv420p",
    ]);
    generate(out, &args);
}

/// What ffprobe says about `path` (panics when it cannot say).
pub(crate) fn ffprobe(path: &Path) -> MediaInfo {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_probe(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|e| panic!("probing {}: {e}", path.display()))
}

/// (width, height) of the first video stream of `path` (also images, which have no duration).
pub(crate) fn dimensions(path: &Path) -> (u32, u32) {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&output.stdout);
    // MPEG-TS lists the stream under its program too: the first line is enough.
    let (width, height) = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches(',')
        .split_once(',')
        .unwrap_or_else(|| panic!("{} has no video: {text:?}", path.display()));
    (
        width.parse().expect("width"),
        height.parse().expect("height"),
    )
}

/// Serves the files of `dir` at `http://127.0.0.1:<port>/<name>`: the stand-in for the Opencast
/// media host (or any host a task downloads from). Runs until the test's runtime ends.
pub(crate) async fn serve_dir(dir: PathBuf) -> String {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    async fn file(
        State(dir): State<Arc<PathBuf>>,
        UrlPath(name): UrlPath<String>,
    ) -> Result<Vec<u8>, StatusCode> {
        if name.contains('/') || name.starts_with('.') {
            return Err(StatusCode::NOT_FOUND);
        }
        tokio::fs::read(dir.join(&name))
            .await
            .map_err(|_| StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(file))
        .with_state(Arc::new(dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

/// The value after `flag` in an argument vector, for every occurrence.
pub fn flag_values<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}
