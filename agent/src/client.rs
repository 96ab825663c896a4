//! HTTP client of the update server's worker API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use manifests::{ChannelStatement, Release, Rollback, Root, Signed};
use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::OutcomeRecord;

/// The most the agent reads of a metadata answer (the handshake, `/latest`, a root document):
/// far above any genuine one (a few KiB), small enough that a hostile or broken server cannot
/// grow the worker's memory with it. A longer answer is refused as `too_large`.
pub const METADATA_LIMIT: usize = 1024 * 1024;

/// The most the agent reads of an error answer's body (only its start goes into the message).
const ERROR_BODY_LIMIT: usize = 4096;

/// The handshake answer (also cached in the state directory: `handshake::HANDSHAKE_FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handshake {
    /// Oldest version allowed to serve on the channel.
    pub minimum_version: String,
    /// The version operators want.
    pub recommended_version: String,
    /// Suggested poll interval.
    pub poll_interval_s: u64,
    /// Whether this agent is below the minimum.
    pub below_minimum: bool,
    /// Current root version.
    pub root_version: u64,
}

/// What `/latest` returned.
#[derive(Debug, Clone, Deserialize)]
pub struct Latest {
    /// Current root version.
    pub root_version: u64,
    /// The signed channel statement (none before the first promotion).
    pub channel: Option<Signed<ChannelStatement>>,
    /// The release it points to.
    pub release: Option<Signed<Release>>,
    /// A rollback directive covering this agent's version.
    pub rollback: Option<Signed<Rollback>>,
    /// Suggested poll interval.
    pub poll_interval_s: u64,
}

/// A `/latest` answer: changed (with its ETag) or not.
#[derive(Debug, Clone)]
pub enum Poll {
    /// 304: same as the ETag sent.
    NotModified,
    /// 200.
    Changed {
        /// The body.
        latest: Box<Latest>,
        /// Its ETag.
        etag: Option<String>,
    },
}

/// What `POST /api/workers/enroll` answers (the credential is shown once).
#[derive(Clone, Deserialize)]
pub struct Enrolled {
    /// The worker it is bound to.
    pub worker_id: String,
    /// The secret to send as `Authorization: Bearer` from now on.
    pub credential: String,
    /// The channel the join token bound it to, if any.
    #[serde(default)]
    pub channel: Option<String>,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("worker_id", &self.worker_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize)]
struct RegisterBody<'a> {
    worker_id: &'a str,
    current_version: &'a str,
    platform: &'a str,
    channel: &'a str,
    hostname: &'a str,
    task_types: &'a [String],
}

/// The update server, as a worker sees it: one server, or replicas of it (`--update-server
/// A,B,...`) of which one is in use at a time. Clones share the one in use, so the handshake,
/// the update loop and the outbox flusher all move to the next replica together.
#[derive(Debug, Clone)]
pub struct UpdateClient {
    http: reqwest::Client,
    /// The update servers, in the configured order (at least one).
    bases: Arc<[String]>,
    /// The index in `bases` of the server in use.
    current: Arc<AtomicUsize>,
    token: String,
    read_timeout: Duration,
}

impl UpdateClient {
    /// A client for the configured server.
    pub fn new(config: &AgentConfig) -> Result<Self, UpdateFailure> {
        // No client-wide read timeout: reqwest's also runs while waiting for the response
        // headers, so it would cut every long poll longer than itself (`wait=60` against the
        // default 30 s). Each API request below carries its own total timeout (a long poll's
        // includes its wait), and downloads time every read themselves (`download.rs`).
        // Proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`) stay on: never `no_proxy()`.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .user_agent(concat!("worker-agent/", env!("BUILD_VERSION")));
        let http = crate::tls::with_bundle(http, config.ca_bundle.as_deref())
            .map_err(|e| UpdateFailure::fatal(FailureReason::Io, e.to_string()))?
            .build()
            .map_err(|e| UpdateFailure::fatal(FailureReason::Io, format!("HTTP client: {e}")))?;
        let mut bases: Vec<String> = config.server_bases().map(str::to_owned).collect();
        if bases.is_empty() {
            bases.push(config.server_base().to_owned());
        }
        Ok(UpdateClient {
            http,
            bases: bases.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token: config.token.clone(),
            read_timeout: Duration::from_secs(config.read_timeout_secs),
        })
    }

    /// The underlying HTTP client (downloads share its connection pool).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The base URL of the update server in use.
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// The bearer token to send with a download from `url`: only when `url` is on the origin of
    /// one of the update servers. A mirror gets none, even one whose URL merely starts with a
    /// server's address (for a server on port 6553: `http://127.0.0.1:65530`,
    /// `http://127.0.0.1:6553@mirror`).
    pub fn token_for(&self, url: &str) -> Option<&str> {
        self.bases
            .iter()
            .any(|base| same_origin(url, base))
            .then_some(self.token.as_str())
    }

    /// An artifact URL: absolute, or relative to the update server in use.
    pub fn resolve(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}/{}", self.base(), url.trim_start_matches('/'))
        }
    }

    /// Sends the request `build` makes for a server's base URL to the server in use; when that
    /// one cannot be reached (no connection, reset, timeout: no HTTP answer at all), to the next
    /// one of the list, each at most once, and stays on the first that answers. An HTTP answer,
    /// even an error status, is the server's word and is not retried elsewhere.
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpdateFailure> {
        let count = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % count;
        let mut last = None;
        for step in 0..count {
            let at = (first + step) % count;
            let base = &self.bases[at];
            match build(base).send().await {
                Ok(response) => {
                    if step > 0 {
                        self.current.store(at, Ordering::Relaxed);
                        tracing::warn!(
                            server = %base,
                            previous = %self.bases[first],
                            "update server failover: now using this update server"
                        );
                    }
                    return Ok(response);
                }
                Err(error) => {
                    let failure = network(error);
                    if count > 1 {
                        tracing::warn!(
                            server = %base,
                            reason = %failure.reason,
                            error = %failure.message,
                            "update server unreachable; trying the next one of --update-server"
                        );
                    }
                    last = Some(failure);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            UpdateFailure::retryable(FailureReason::Download, "no update server configured")
        }))
    }

    fn request(&self, base: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
    }

    /// `POST /api/workers/enroll` with a join token (`worker-release enroll-token`): this
    /// worker's own credential. A refusal (`enroll_token_used_up`, `enroll_token_expired`,
    /// `enroll_token_revoked`, `already_enrolled`) is fatal, with the server's reason in the
    /// message; transport trouble and 5xx are retryable.
    pub async fn enrol(
        &self,
        join_token: &str,
        worker_id: &str,
    ) -> Result<Enrolled, UpdateFailure> {
        let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let body = serde_json::json!({"worker_id": worker_id, "hostname": hostname.trim()});
        let response = self
            .send(|base| {
                self.http
                    .post(format!("{base}/api/workers/enroll"))
                    .bearer_auth(join_token)
                    .timeout(self.read_timeout)
                    .json(&body)
            })
            .await?;
        json(response).await
    }

    /// `POST /api/workers/register`.
    pub async fn register(
        &self,
        worker_id: &str,
        version: &str,
        platform: &str,
        channel: &str,
        task_types: &[String],
    ) -> Result<Handshake, UpdateFailure> {
        let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let body = RegisterBody {
            worker_id,
            current_version: version,
            platform,
            channel,
            hostname: hostname.trim(),
            task_types,
        };
        let response = self
            .send(|base| {
                self.request(base, reqwest::Method::POST, "/api/workers/register")
                    .timeout(self.read_timeout)
                    .json(&body)
            })
            .await?;
        json(response).await
    }

    /// `GET /api/worker-updates/latest`, optionally a long poll of `wait`.
    pub async fn latest(
        &self,
        channel: &str,
        platform: &str,
        version: &str,
        worker_id: &str,
        etag: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Poll, UpdateFailure> {
        let mut query = vec![
            ("channel", channel.to_owned()),
            ("platform", platform.to_owned()),
            ("current_version", version.to_owned()),
            ("worker_id", worker_id.to_owned()),
        ];
        if let Some(wait) = wait {
            query.push(("wait", wait.as_secs().to_string()));
        }
        let response = self
            .send(|base| {
                let mut request = self
                    .request(base, reqwest::Method::GET, "/api/worker-updates/latest")
                    .query(&query)
                    .timeout(self.read_timeout + wait.unwrap_or_default());
                if let Some(etag) = etag {
                    request = request.header(reqwest::header::IF_NONE_MATCH, etag);
                }
                request
            })
            .await?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Poll::NotModified);
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let latest: Latest = json(response).await?;
        Ok(Poll::Changed {
            latest: Box::new(latest),
            etag,
        })
    }

    /// `GET /api/worker-updates/root/<version>.json`.
    pub async fn root(&self, version: u64) -> Result<Signed<Root>, UpdateFailure> {
        let path = format!("/api/worker-updates/root/{version}.json");
        let response = self
            .send(|base| {
                self.request(base, reqwest::Method::GET, &path)
                    .timeout(self.read_timeout)
            })
            .await?;
        let response = check_status(response).await?;
        let bytes = read_metadata(response).await?;
        Ok(Signed::<Root>::from_slice(&bytes)?)
    }

    /// `POST /api/worker-updates/report`.
    pub async fn report(
        &self,
        worker_id: &str,
        outcome: &OutcomeRecord,
    ) -> Result<(), UpdateFailure> {
        let body = serde_json::json!({
            "worker_id": worker_id,
            "correlation_id": outcome.correlation_id,
            "from_version": outcome.from_version,
            "to_version": outcome.to_version,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "duration_ms": outcome.duration_ms,
            "at": outcome.at,
            "channel": outcome.channel,
        });
        let response = self
            .send(|base| {
                self.request(base, reqwest::Method::POST, "/api/worker-updates/report")
                    .timeout(self.read_timeout)
                    .json(&body)
            })
            .await?;
        check_status(response).await.map(|_| ())
    }
}

/// A transport failure: retryable, labelled `timeout`, `tls` or `download`.
pub fn network(error: reqwest::Error) -> UpdateFailure {
    if let Some(failure) = crate::tls::tls_failure(&error) {
        failure
    } else if error.is_timeout() {
        UpdateFailure::retryable(FailureReason::Timeout, error.to_string())
    } else {
        UpdateFailure::retryable(FailureReason::Download, error.to_string())
    }
}

async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, UpdateFailure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    let (body, _) = read_at_most(response, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let message = format!(
        "update server answered {status} for {url}: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>()
    );
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(UpdateFailure::retryable(FailureReason::Server, message))
    } else {
        Err(UpdateFailure::fatal(
            FailureReason::Http(status.as_u16()),
            message,
        ))
    }
}

async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, UpdateFailure> {
    let response = check_status(response).await?;
    let url = response.url().to_string();
    let bytes = read_metadata(response).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        UpdateFailure::fatal(
            FailureReason::Malformed,
            format!("update server answer from {url}: {e}"),
        )
    })
}

/// Whether two absolute URLs have the same origin: scheme, host and port (an explicit default
/// port equals none). Userinfo and paths do not count; a URL that does not parse, or one with an
/// opaque origin, matches nothing.
fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            let origin = a.origin();
            origin.is_tuple() && origin == b.origin()
        }
        _ => false,
    }
}

/// The body of a metadata answer, at most [`METADATA_LIMIT`] bytes, else `too_large`. A
/// declared `Content-Length` over the limit is refused before reading; an answer without one
/// (chunked, or until the connection closes) is read chunk by chunk and abandoned as soon as it
/// passes the limit, so the agent never holds more than the limit and one chunk.
async fn read_metadata(response: reqwest::Response) -> Result<Vec<u8>, UpdateFailure> {
    let url = response.url().to_string();
    let too_large = || {
        UpdateFailure::fatal(
            FailureReason::TooLarge,
            format!("update server answer from {url} is larger than {METADATA_LIMIT} bytes"),
        )
    };
    if response
        .content_length()
        .is_some_and(|length| length > METADATA_LIMIT as u64)
    {
        return Err(too_large());
    }
    match read_at_most(response, METADATA_LIMIT)
        .await
        .map_err(network)?
    {
        (body, true) => Ok(body),
        (_, false) => Err(too_large()),
    }
}

/// The first `limit` bytes of `response`'s body, read chunk by chunk, and whether that was all
/// of it. The rest is never read: dropping the response closes its connection.
async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use clap::Parser;

    use super::*;

    const SERVER: &str = "http://127.0.0.1:6553";

    #[test]
    fn the_update_server_itself_is_the_same_origin() {
        for url in [
            "http://127.0.0.1:6553/api/artifacts/abc",
            "http://127.0.0.1:6553",
            "HTTP://127.0.0.1:6553/x",
            // Credentials in the URL do not change where it goes.
            "http://user:secret@127.0.0.1:6553/x",
        ] {
            assert!(same_origin(url, SERVER), "{url}");
        }
        assert!(same_origin(
            "https://updates.example.com:443/a",
            "https://updates.example.com"
        ));
    }

    #[test]
    fn a_url_sharing_the_servers_prefix_is_another_origin() {
        for url in [
            // Another port whose digits start with the server's.
            "http://127.0.0.1:65530/mirror",
            // The server's address as userinfo, then the real host.
            "http://127.0.0.1:6553@127.0.0.1:9000/mirror",
            "http://127.0.0.1:6553@evil.example/mirror",
            "https://127.0.0.1:6553/x",
            "http://127.0.0.10:6553/x",
            "http://localhost:6553/x",
            // Does not parse (not a port): nothing to send a token to.
            "http://127.0.0.1:6553.evil.example/x",
            "/api/artifacts/abc",
        ] {
            assert!(!same_origin(url, SERVER), "{url}");
        }
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: AgentConfig,
    }

    /// `chunks` chunks of 64 KiB of spaces, streamed (chunked, no `Content-Length`).
    fn streamed_spaces(chunks: usize) -> Body {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        Body::from_stream(futures_util::stream::iter(
            std::iter::repeat_n(chunk, chunks).map(Ok::<_, std::io::Error>),
        ))
    }

    /// A client of a real HTTP server on loopback whose metadata answers are too large: a root
    /// streamed without a length, a handshake with a declared length, and a 500 with a huge
    /// error body.
    async fn client_of_oversized_server() -> UpdateClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .route(
                "/api/worker-updates/root/2.json",
                get(|| async { streamed_spaces(128) }),
            )
            .route(
                "/api/worker-updates/root/3.json",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, streamed_spaces(128)) }),
            )
            .route(
                "/api/workers/register",
                post(|| async { vec![b' '; METADATA_LIMIT + 1] }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = Cli::try_parse_from([
            "worker-agent",
            "--update-server",
            &base,
            "--token",
            "t",
            "--root",
            "/nonexistent/root.json",
            "--state-dir",
            "/nonexistent/state",
        ])
        .expect("agent arguments")
        .config;
        UpdateClient::new(&config).expect("client")
    }

    #[tokio::test]
    async fn oversized_metadata_answers_are_refused_as_too_large() {
        let client = client_of_oversized_server().await;
        let streamed = client.root(2).await.expect_err("8 MiB root");
        assert_eq!(streamed.reason, FailureReason::TooLarge, "{streamed}");
        assert_eq!(streamed.reason.label(), "too_large");
        let declared = client
            .register("w", "1.0.0", "p", "stable", &[])
            .await
            .expect_err("1 MiB + 1 handshake");
        assert_eq!(declared.reason, FailureReason::TooLarge, "{declared}");
        // An error answer's body is read only as far as its message needs.
        let error = client.root(3).await.expect_err("500");
        assert_eq!(error.reason, FailureReason::Server, "{error}");
        assert!(error.message.len() < 1000, "{}", error.message);
    }
}
