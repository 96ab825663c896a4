//! Downloads an artifact into a partial file in the install directory: streamed and hashed as it
//! goes (never held in memory), cut at the signed size, with a read timeout, a minimum transfer
//! rate, retries with backoff, and `Range` resume of the partial file.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use manifests::{Artifact, ArtifactVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::network;
use crate::error::{FailureReason, UpdateFailure};

/// Download settings.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Attempts (each resumes where the last stopped).
    pub attempts: u32,
    /// Longest silence while reading the body.
    pub read_timeout: Duration,
    /// Slowest acceptable rate, bytes per second, measured over `rate_window`.
    pub min_rate: u64,
    /// Window of the rate measurement.
    pub rate_window: Duration,
    /// First backoff between attempts (doubles, capped at 30 s).
    pub backoff: Duration,
}

/// Downloads `artifact` from `url` into `part` (resuming it if present) and verifies it: on
/// success `part` holds exactly the signed bytes, fsync'd. A verdict on the bytes (size or hash)
/// deletes the partial file; a network failure keeps it for the next attempt.
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    artifact: &Artifact,
    part: &Path,
    options: &DownloadOptions,
    on_bytes: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), UpdateFailure> {
    let transfer = Transfer {
        http,
        url,
        token,
        artifact,
        part,
        options,
        on_bytes,
    };
    let mut last = UpdateFailure::retryable(FailureReason::Download, "no attempt made");
    for attempt in 1..=options.attempts.max(1) {
        match attempt_once(&transfer).await {
            Ok(()) => return Ok(()),
            Err(failure) if failure.retryable && attempt < options.attempts => {
                let backoff = options
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(5))
                    .min(Duration::from_secs(30));
                tracing::warn!(attempt, reason = %failure.reason, error = %failure.message, backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "download attempt failed; retrying");
                last = failure;
                tokio::time::sleep(backoff).await;
            }
            Err(failure) => {
                if !failure.retryable {
                    let _ = tokio::fs::remove_file(part).await;
                }
                return Err(failure);
            }
        }
    }
    Err(last)
}

/// One download's inputs, shared by its attempts.
struct Transfer<'a> {
    /// Client the requests go out on.
    http: &'a reqwest::Client,
    /// Where the artifact is served.
    url: &'a str,
    /// Bearer token, when the server wants one.
    token: Option<&'a str>,
    /// The signed size and hash the bytes must match.
    artifact: &'a Artifact,
    /// The partial file, kept between attempts.
    part: &'a Path,
    /// Timeouts, rate floor and retry policy.
    options: &'a DownloadOptions,
    /// Told the length of every chunk written (progress metrics).
    on_bytes: &'a (dyn Fn(u64) + Send + Sync),
}

/// One attempt: resume (or restart) the partial file and stream the rest into it.
async fn attempt_once(transfer: &Transfer<'_>) -> Result<(), UpdateFailure> {
    let (artifact, part, options) = (transfer.artifact, transfer.part, transfer.options);
    let what = format!("artifact {}", transfer.url);
    // Re-hash what an earlier attempt left, so the resumed stream continues one verification.
    let (mut verifier, mut have) = rehash(part, artifact, &what).await?;
    if have == artifact.size {
        verifier.finish()?;
        return Ok(());
    }
    let mut request = transfer.http.get(transfer.url);
    if let Some(token) = transfer.token {
        request = request.bearer_auth(token);
    }
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let response = tokio::time::timeout(options.read_timeout, request.send())
        .await
        .map_err(|_| {
            UpdateFailure::retryable(
                FailureReason::Timeout,
                format!("{what}: no answer in {} s", options.read_timeout.as_secs()),
            )
        })?
        .map_err(network)?;
    let status = response.status();
    let mut file = match status {
        reqwest::StatusCode::PARTIAL_CONTENT if have > 0 => tokio::fs::OpenOptions::new()
            .append(true)
            .open(part)
            .await
            .map_err(|e| UpdateFailure::io("opening the partial download", part, &e))?,
        reqwest::StatusCode::OK | reqwest::StatusCode::PARTIAL_CONTENT => {
            // A full answer (or a server that ignored our Range): start over.
            verifier = ArtifactVerifier::new(artifact, what.clone());
            have = 0;
            tokio::fs::File::create(part)
                .await
                .map_err(|e| UpdateFailure::io("creating the download file", part, &e))?
        }
        status if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            return Err(UpdateFailure::retryable(
                FailureReason::Server,
                format!("{what}: {status}"),
            ));
        }
        status => {
            return Err(UpdateFailure::fatal(
                FailureReason::Http(status.as_u16()),
                format!("{what}: {status}"),
            ))
        }
    };
    let mut stream = response.bytes_stream();
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        let next = tokio::time::timeout(options.read_timeout, stream.next())
            .await
            .map_err(|_| {
                UpdateFailure::retryable(
                    FailureReason::Timeout,
                    format!("{what}: no data for {} s", options.read_timeout.as_secs()),
                )
            })?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(network)?;
        // Cut at the signed size: an endless stream is refused at the first byte too many.
        verifier.update(&chunk)?;
        file.write_all(&chunk)
            .await
            .map_err(|e| UpdateFailure::io("writing the download", part, &e))?;
        have += chunk.len() as u64;
        window_bytes += chunk.len() as u64;
        (transfer.on_bytes)(chunk.len() as u64);
        let elapsed = window_start.elapsed();
        if elapsed >= options.rate_window {
            let rate = window_bytes as f64 / elapsed.as_secs_f64();
            if rate < options.min_rate as f64 && have < artifact.size {
                file.flush()
                    .await
                    .map_err(|e| UpdateFailure::io("writing the download", part, &e))?;
                return Err(UpdateFailure::retryable(
                    FailureReason::TooSlow,
                    format!(
                        "{what}: {rate:.0} B/s over {:.1} s, minimum {} B/s",
                        elapsed.as_secs_f64(),
                        options.min_rate
                    ),
                ));
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
    }
    file.flush()
        .await
        .map_err(|e| UpdateFailure::io("writing the download", part, &e))?;
    file.sync_all()
        .await
        .map_err(|e| UpdateFailure::io("syncing the download", part, &e))?;
    if have < artifact.size {
        return Err(UpdateFailure::retryable(
            FailureReason::Verification(manifests::Reason::SizeMismatch),
            format!("{what}: stream ended at {have} of {} bytes", artifact.size),
        ));
    }
    verifier.finish()?;
    Ok(())
}

/// A verifier that has seen the existing partial file, and that file's length (0 when absent).
/// A partial file longer than the signed size is discarded.
async fn rehash(
    part: &Path,
    artifact: &Artifact,
    what: &str,
) -> Result<(ArtifactVerifier, u64), UpdateFailure> {
    let mut verifier = ArtifactVerifier::new(artifact, what);
    let mut file = match tokio::fs::File::open(part).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((verifier, 0)),
        Err(e) => return Err(UpdateFailure::io("reading the partial download", part, &e)),
    };
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|e| UpdateFailure::io("reading the partial download", part, &e))?;
        if read == 0 {
            return Ok((verifier, total));
        }
        if verifier.update(&buffer[..read]).is_err() {
            drop(file);
            let _ = tokio::fs::remove_file(part).await;
            return Ok((ArtifactVerifier::new(artifact, what), 0));
        }
        total += read as u64;
    }
}
