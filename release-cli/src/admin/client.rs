//! The connection to the update server's admin API: where it is, the admin token, timeouts,
//! streamed uploads, and how answers, redirects and refusals are read.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use serde_json::Value;

use super::output::{sanitize, truncate};

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Total time allowed for one API call, uploads excepted.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Uploads have no total timeout; they fail after this long without sending or receiving.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Environment variable holding the admin token itself (alternative to `--token-file`).
const TOKEN_ENV: &str = "WORKER_RELEASE_TOKEN";

/// How to reach the update server's admin API; flattened into every server command.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Base URL of the update server, e.g. https://updates.example.org (a path prefix is kept).
    #[arg(long, env = "UPDATE_SERVER_URL", value_parser = parse_server_url)]
    server: Url,
    /// File holding the admin token on its first non-empty line. Without it, the token is read
    /// from the WORKER_RELEASE_TOKEN environment variable.
    #[arg(long, env = "WORKER_RELEASE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for the update server, in addition to the system's
    /// (a server certificate from an internal CA; the agent's variable of the same name).
    #[arg(long, env = "UPDATE_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
}

/// The update server answered with an error status. `reason` is the stable label of its error
/// body, when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRefused {
    /// HTTP status code.
    pub status: u16,
    /// The body's `reason` label.
    pub reason: Option<String>,
    /// The body's `error` sentence (or what could be made of a body that is not the API's).
    pub error: String,
    /// What was being done, e.g. `promote stable 1.2.0`.
    pub what: String,
}

impl ServerRefused {
    fn from_body(what: &str, status: u16, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(sanitize)
                .filter(|s| !s.trim().is_empty())
        };
        let error = field("error").unwrap_or_else(|| {
            // Not the API's error body (a proxy's page, say): its first line, or the status text.
            let text = String::from_utf8_lossy(body);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            match line {
                Some(line) => truncate(&sanitize(line), 200),
                None => reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("no explanation given")
                    .to_owned(),
            }
        });
        ServerRefused {
            status,
            reason: field("reason"),
            error,
            what: what.to_owned(),
        }
    }
}

impl fmt::Display for ServerRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: refused by server ({}): {}",
            self.what, self.status, self.error
        )
    }
}

impl std::error::Error for ServerRefused {}

/// A connection to the admin API: base URL, admin token, HTTP client.
pub(super) struct Server {
    /// Base URL of the API (a path prefix kept).
    base: Url,
    /// `Bearer <token>`, marked sensitive so it never shows in debug output.
    auth: HeaderValue,
    /// The HTTP client; commands build their requests with it.
    pub(super) client: Client,
}

impl Server {
    pub(super) fn new(args: &ServerArgs) -> Result<Self> {
        let token = load_token(
            args.token_file.as_deref(),
            std::env::var(TOKEN_ENV).ok().as_deref(),
        )?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the admin token is not usable in an HTTP header")?;
        auth.set_sensitive(true);
        if args.server.scheme() == "http" && !is_loopback(&args.server) {
            eprintln!(
                "worker-release: warning: sending the admin token to {} over plain http",
                args.server
            );
        }
        let builder = Client::builder()
            .user_agent(concat!("worker-release/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // Per request instead: REQUEST_TIMEOUT for API calls, none for uploads.
            .timeout(None::<Duration>)
            // A redirect would turn a POST into a GET and may drop the token: report it instead.
            .redirect(reqwest::redirect::Policy::none());
        // reqwest makes the kernel drop a connection whose sent data stays unacknowledged for
        // 30 s; give a stalled upload the time for UPLOAD_IDLE_TIMEOUT to report it first.
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let builder = builder.tcp_user_timeout(UPLOAD_IDLE_TIMEOUT + Duration::from_secs(30));
        let builder = match &args.ca_bundle {
            Some(path) => builder.tls_certs_merge(ca_bundle(path)?),
            None => builder,
        };
        let client = builder.build().context("setting up the HTTP client")?;
        Ok(Server {
            base: args.server.clone(),
            auth,
            client,
        })
    }

    pub(super) fn endpoint(&self, segments: &[&str]) -> Url {
        endpoint(&self.base, segments)
    }

    /// Sends an API call (authenticated, with the total timeout) and decodes the JSON answer.
    pub(super) fn send(&self, what: &str, request: RequestBuilder) -> Result<(u16, Value)> {
        let (client, request) = request
            .header(AUTHORIZATION, self.auth.clone())
            .timeout(REQUEST_TIMEOUT)
            .build_split();
        let request = request.with_context(|| format!("{what}: building the request"))?;
        let url = request.url().clone();
        let answer = client
            .execute(request)
            .and_then(read_answer)
            .map_err(|e| transport_error(what, &url, e))?;
        let status = answer.status;
        Ok((status, interpret(what, &url, answer)?))
    }

    /// PUTs a file, streamed from disk. No total timeout: the upload fails only when nothing was
    /// sent or received for `UPLOAD_IDLE_TIMEOUT`.
    pub(super) fn upload(&self, what: &str, url: &Url, path: &Path, size: u64) -> Result<u16> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let progress = Arc::new(Progress::new());
        let reader = ProgressReader {
            inner: file,
            progress: Arc::clone(&progress),
        };
        let request = self
            .client
            .put(url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::sized(reader, size));
        // The blocking client cannot be interrupted, so the request runs on its own thread and
        // this one watches its progress; on a stall the command fails and the thread is dropped
        // with the process.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("upload".into())
            .spawn(move || {
                let _ = tx.send(request.send().and_then(read_answer));
            })
            .context("starting the upload thread")?;
        let answer = loop {
            let idle = progress.idle();
            if idle >= UPLOAD_IDLE_TIMEOUT {
                bail!(
                    "{what}: connection to {url} stalled: nothing sent or received for {} s",
                    idle.as_secs()
                );
            }
            match rx.recv_timeout(UPLOAD_IDLE_TIMEOUT - idle) {
                Ok(result) => break result.map_err(|e| transport_error(what, url, e))?,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("{what}: the upload to {url} ended without an answer")
                }
            }
        };
        let status = answer.status;
        interpret(what, url, answer)?;
        Ok(status)
    }
}

/// The certificates of the PEM file `path` (`--ca-bundle`); none is an error, not "trust only
/// the system's".
fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("CA bundle {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("CA bundle {} is not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        bail!("CA bundle {} holds no PEM certificate", path.display());
    }
    Ok(certificates)
}

/// An HTTP answer read in full.
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
}

fn read_answer(response: Response) -> reqwest::Result<Answer> {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes()?.to_vec();
    Ok(Answer {
        status,
        location,
        body,
    })
}

/// 2xx: the JSON body (null when empty); 3xx: an error naming the redirect; else [`ServerRefused`].
fn interpret(what: &str, url: &Url, answer: Answer) -> Result<Value> {
    let Answer {
        status,
        location,
        body,
    } = answer;
    match status {
        200..=299 if body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Null),
        200..=299 => serde_json::from_slice(&body).with_context(|| {
            format!("{what}: {url} answered {status} with a body that is not JSON")
        }),
        300..=399 => bail!(
            "{what}: {url} answered {status}, a redirect to {}: use the final URL as --server",
            location
                .as_deref()
                .map_or("(no Location)".to_owned(), sanitize)
        ),
        _ => Err(ServerRefused::from_body(what, status, &body).into()),
    }
}

fn transport_error(what: &str, url: &Url, error: reqwest::Error) -> anyhow::Error {
    let context = if error.is_connect() {
        format!("{what}: could not reach the update server at {url}")
    } else if error.is_body() {
        format!("{what}: the connection to {url} broke during the transfer")
    } else if error.is_timeout() {
        format!(
            "{what}: no answer from {url} within {} s",
            REQUEST_TIMEOUT.as_secs()
        )
    } else {
        format!("{what}: request to {url} failed")
    };
    anyhow::Error::new(error.without_url()).context(context)
}

/// When the upload last moved: bytes read from the file to go out, or the end of the file.
#[derive(Debug)]
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The file being uploaded; the HTTP client reads it only as fast as the connection takes it.
struct ProgressReader {
    inner: File,
    progress: Arc<Progress>,
}

impl Read for ProgressReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress.touch();
        Ok(read)
    }
}

fn parse_server_url(text: &str) -> std::result::Result<Url, String> {
    let url =
        Url::parse(text).map_err(|e| format!("{e} (expected e.g. https://updates.example.org)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: a server URL has no query or fragment"));
    }
    Ok(url)
}

/// `base` with `segments` appended as path segments (percent-encoded), whether or not `base`
/// ends with a slash; a path prefix in `base` is kept.
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The admin token: from the token file when one is named, else from `WORKER_RELEASE_TOKEN`.
fn load_token(token_file: Option<&Path>, env_token: Option<&str>) -> Result<String> {
    let (token, source) = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading token file {}", path.display()))?;
            let token = token_from_file(&text).with_context(|| {
                format!("token file {} holds no token (it is empty)", path.display())
            })?;
            (token.to_owned(), format!("token file {}", path.display()))
        }
        None => match env_token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => (token.to_owned(), TOKEN_ENV.to_owned()),
            None => bail!(
                "no admin token: pass --token-file FILE, or set WORKER_RELEASE_TOKEN_FILE, \
                 or set {TOKEN_ENV} to the token"
            ),
        },
    };
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!("{source}: the token may only contain printable ASCII characters without spaces");
    }
    Ok(token)
}

/// The first line that is neither empty nor a `#` comment, trimmed; in the update server's
/// `name=token` format (its `--admin-token-file` itself works) the token after `=`.
fn token_from_file(text: &str) -> Option<&str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))?;
    Some(line.split_once('=').map_or(line, |(_, token)| token.trim()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use anyhow::anyhow;
    use serde_json::json;

    use super::*;

    fn url(text: &str) -> Url {
        parse_server_url(text).unwrap()
    }

    #[test]
    fn endpoint_with_or_without_trailing_slash() {
        for base in ["http://localhost:8080", "http://localhost:8080/"] {
            assert_eq!(
                endpoint(&url(base), &["api", "admin", "status"]).as_str(),
                "http://localhost:8080/api/admin/status"
            );
        }
        for base in [
            "https://example.org/updates",
            "https://example.org/updates/",
        ] {
            assert_eq!(
                endpoint(&url(base), &["api", "admin", "releases"]).as_str(),
                "https://example.org/updates/api/admin/releases"
            );
        }
    }

    #[test]
    fn endpoint_encodes_segments() {
        let joined = endpoint(
            &url("https://example.org"),
            &["api", "admin", "channels", "a/b c", "promote"],
        );
        assert_eq!(
            joined.as_str(),
            "https://example.org/api/admin/channels/a%2Fb%20c/promote"
        );
        let mut audit = endpoint(&url("https://example.org/"), &["api", "admin", "audit"]);
        audit.query_pairs_mut().append_pair("limit", "50");
        assert_eq!(
            audit.as_str(),
            "https://example.org/api/admin/audit?limit=50"
        );
    }

    #[test]
    fn server_url_must_be_http() {
        assert!(parse_server_url("ftp://example.org").is_err());
        assert!(parse_server_url("example.org").is_err());
        assert!(parse_server_url("localhost:8080").is_err());
        assert!(parse_server_url("https://example.org/?x=1").is_err());
        assert!(parse_server_url("https://example.org").is_ok());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback(&url("http://localhost:8080")));
        assert!(is_loopback(&url("http://127.0.0.1:8080")));
        assert!(is_loopback(&url("http://[::1]:8080")));
        assert!(!is_loopback(&url("http://updates.example.org")));
    }

    #[test]
    fn token_is_the_first_non_empty_line() {
        assert_eq!(token_from_file("abc123\n"), Some("abc123"));
        assert_eq!(
            token_from_file("\n  \r\n  abc123 \r\nsecond\n"),
            Some("abc123")
        );
        assert_eq!(token_from_file("abc123"), Some("abc123"));
        assert_eq!(token_from_file(""), None);
        assert_eq!(token_from_file("\n \n\t\n"), None);
    }

    #[test]
    fn token_file_wins_over_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\nfrom-file\n").unwrap();
        assert_eq!(
            load_token(Some(&path), Some("from-env")).unwrap(),
            "from-file"
        );
        assert_eq!(load_token(None, Some(" from-env\n")).unwrap(), "from-env");
        let none = load_token(None, Some("  ")).unwrap_err().to_string();
        assert!(none.contains("no admin token"), "{none}");
        assert!(load_token(None, None).is_err());
        std::fs::write(&path, "\n\n").unwrap();
        let empty = load_token(Some(&path), None).unwrap_err().to_string();
        assert!(empty.contains("holds no token"), "{empty}");
        std::fs::write(&path, "two words\n").unwrap();
        assert!(load_token(Some(&path), None).is_err());
        let missing = dir.path().join("missing");
        let error = format!("{:#}", load_token(Some(&missing), None).unwrap_err());
        assert!(error.contains("reading token file"), "{error}");
    }

    #[test]
    fn refusals_carry_the_reason_label() {
        let url = url("http://localhost:8080/api/admin/channels/stable/promote");
        let answer = Answer {
            status: 409,
            location: None,
            body: br#"{"error":"canary soak has not passed","reason":"soak"}"#.to_vec(),
        };
        let error = interpret("promote stable 1.2.0", &url, answer).unwrap_err();
        let refused = error.downcast_ref::<ServerRefused>().unwrap();
        assert_eq!(refused.reason.as_deref(), Some("soak"));
        assert_eq!(
            error.to_string(),
            "promote stable 1.2.0: refused by server (409): canary soak has not passed"
        );
        assert_eq!(crate::failure::reason_label(&error), "soak");

        let proxy = ServerRefused::from_body("status", 502, b"<html>\n<h1>Bad gateway</h1>");
        assert_eq!(proxy.reason, None);
        assert_eq!(proxy.error, "<html>");
        let bare = ServerRefused::from_body("status", 503, b"");
        assert_eq!(bare.error, "Service Unavailable");
    }

    #[test]
    fn success_and_redirect_answers() {
        let url = url("http://localhost:8080/api/admin/status");
        let ok = |status, body: &[u8]| Answer {
            status,
            location: None,
            body: body.to_vec(),
        };
        assert_eq!(
            interpret("status", &url, ok(200, br#"{"a":1}"#)).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(
            interpret("status", &url, ok(201, b"")).unwrap(),
            Value::Null
        );
        assert!(interpret("status", &url, ok(200, b"<html>")).is_err());
        let redirect = Answer {
            status: 308,
            location: Some("https://localhost/api/admin/status".to_owned()),
            body: Vec::new(),
        };
        let error = interpret("status", &url, redirect).unwrap_err().to_string();
        assert!(error.contains("redirect to https://localhost/"), "{error}");
        assert_eq!(crate::failure::reason_label(&anyhow!("plain")), "invalid");
    }
}
