//! The layer's self-check: proof that it can do its job, not just that its process is alive.
//! Every instance answers `GET /runner/health` on its port (over loopback HTTP, as the Manager
//! would reach it), and, when the configured `ffmpeg` is found, a one-second synthetic encode
//! (the codecs of the encoding ladder: H.264 + AAC in MP4, confined by the tool sandbox as a
//! task's tools are) passes in a temporary directory,
//! bounded in time and removed afterwards. The embedding agent runs it on a new version in
//! probation; the layer itself knows nothing of why.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::layer::EsupLayer;
use crate::process::ProcessRunner;

/// Most time one instance gets to answer `/runner/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most time the synthetic encode gets (it takes well under a second on a working host).
pub const ENCODE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the self-check failed (the message names the instance URL or the tool that failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfCheckError {
    /// An instance's `/runner/health` did not answer `200 {"status": "healthy"}`.
    #[error("runner instance {url}: /runner/health: {problem}")]
    Health {
        /// The URL asked.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The synthetic encode failed or timed out.
    #[error("synthetic encode with {ffmpeg}: {problem}")]
    Encode {
        /// The ffmpeg executable used.
        ffmpeg: String,
        /// What went wrong (the end of ffmpeg's error output, a timeout, a missing output).
        problem: String,
    },
}

/// What a passed self-check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfCheckReport {
    /// Instances whose `/runner/health` answered.
    pub instances: usize,
    /// How long the synthetic encode took; `None` when no `ffmpeg` was found to run it with.
    pub encode: Option<Duration>,
}

impl EsupLayer {
    /// Runs the self-check (see the module documentation).
    pub async fn self_check(&self) -> Result<SelfCheckReport, SelfCheckError> {
        let config = &self.runner.config;
        // A wildcard listen address is reached on loopback.
        let host = match config.runner_listen_host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" | "[::]" => "[::1]",
            host => host,
        };
        let client = reqwest::Client::builder()
            .timeout(HEALTH_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| SelfCheckError::Health {
                url: String::new(),
                problem: format!("HTTP client: {e}"),
            })?;
        for instance in &self.instances {
            check_health(
                &client,
                &format!("http://{host}:{}/runner/health", instance.port),
            )
            .await?;
        }
        let encode = match crate::transcription::locate_program(&config.media.ffmpeg_path) {
            Some(ffmpeg) => Some(synthetic_encode(&ffmpeg, self.runner.sandbox.as_ref()).await?),
            None => {
                tracing::warn!(ffmpeg = %config.media.ffmpeg_path.display(), "ffmpeg not found: the self-check encode is skipped");
                None
            }
        };
        Ok(SelfCheckReport {
            instances: self.instances.len(),
            encode,
        })
    }
}

async fn check_health(client: &reqwest::Client, url: &str) -> Result<(), SelfCheckError> {
    let failed = |problem: String| SelfCheckError::Health {
        url: url.to_owned(),
        problem,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| failed(format!("{status}: {e}")))?;
    if status.is_success() && body["status"] == "healthy" {
        Ok(())
    } else {
        Err(failed(format!("{status}: {body}")))
    }
}

/// One second of test pattern and tone to H.264 + AAC in MP4, in its own process group (killed
/// as a group at [`ENCODE_TIMEOUT`]), in a temporary directory removed afterwards.
async fn synthetic_encode(
    ffmpeg: &Path,
    sandbox: Option<&crate::sandbox::ToolSandbox>,
) -> Result<Duration, SelfCheckError> {
    let failed = |problem: String| SelfCheckError::Encode {
        ffmpeg: ffmpeg.display().to_string(),
        problem,
    };
    let dir = tempfile::Builder::new()
        .prefix("worker-agent-self-check-")
        .tempdir()
        .map_err(|e| failed(format!("temporary directory: {e}")))?;
    let output = dir.path().join("self-check.mp4");
    let args = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=duration=1:size=320x180:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=1",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-t",
        "1",
        "-y",
    ];
    let started = Instant::now();
    let runner = ProcessRunner::new(dir.path(), ENCODE_TIMEOUT, CancellationToken::new());
    // Confined as a task's tools are: a version whose sandbox breaks ffmpeg fails probation.
    if let Some(sandbox) = sandbox {
        runner.confine(sandbox.clone());
    }
    let mut command: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    command.push(output.as_os_str());
    runner
        .run("self-check encode", ffmpeg, &command, None)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err(failed(format!("{} is empty or missing", output.display())));
    }
    Ok(started.elapsed())
}
