//! The server commands: publish releases, artifacts and roots, move channels, read the fleet
//! status and the audit trail, through the update server's admin API
//! (`wiki/operations/update-server-api.md`). They carry an admin token, never a private key: every
//! document they send was signed offline beforehand.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use manifests::{hash_file, Artifact, Release, Rollback, Root, Signed, Timestamp, Version};
use reqwest::blocking::{Body, Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use serde_json::{json, Value};

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
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The signed release document (from `worker-release sign-release`).
    release: PathBuf,
    /// An artifact file of the release to upload, matched to the release by its sha256.
    #[arg(long = "artifact")]
    artifacts: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to move, e.g. canary or stable.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// The published release version to point the channel at.
    #[arg(long)]
    version: Version,
    /// Rollout percentage.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: u8,
    /// Why (kept in the audit trail; required with --override).
    #[arg(long)]
    reason: Option<String>,
    /// Promote even though the canary soak or failure-rate gate has not passed.
    #[arg(long = "override", requires = "reason")]
    force: bool,
    /// Minimum version agents must run (default: the server's choice).
    #[arg(long)]
    minimum_version: Option<Version>,
    /// Mark the update urgent.
    #[arg(long)]
    urgent: bool,
}

#[derive(Debug, Args)]
pub struct HaltArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to halt.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// Why (required; kept in the audit trail and shown in `status`).
    #[arg(long, value_parser = parse_non_empty)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to resume.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The channel to roll back.
    #[arg(long, value_parser = parse_channel)]
    channel: String,
    /// The signed rollback directive (from `worker-release sign-rollback`).
    #[arg(long)]
    directive: PathBuf,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishRootArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The signed root N+1 (from `worker-release rotate-root`).
    root: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the server's JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// How many entries to show, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
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

pub fn publish(args: PublishArgs) -> Result<()> {
    let bytes = std::fs::read(&args.release)
        .with_context(|| format!("reading {}", args.release.display()))?;
    let doc = Signed::<Release>::from_slice(&bytes)
        .with_context(|| format!("release document {}", args.release.display()))?;
    let release = &doc.signed;
    // Match every artifact to the release before publishing anything: a wrong path then fails
    // without leaving a half-published release behind.
    let mut uploads: Vec<(&Path, &Artifact)> = Vec::new();
    for path in &args.artifacts {
        let (sha256, size) = hash_file(path)?;
        let artifact = release
            .artifacts
            .iter()
            .find(|a| a.sha256 == sha256 && a.size == size)
            .ok_or_else(|| {
                anyhow!(
                    "--artifact {}: sha256 {sha256} ({size} bytes) is not an artifact of release {} ({})",
                    path.display(),
                    release.version,
                    release
                        .artifacts
                        .iter()
                        .map(|a| format!("{}={}", a.platform, a.sha256))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        uploads.push((path, artifact));
    }

    let server = Server::new(&args.server)?;
    let what = format!("publish release {}", release.version);
    let (status, answer) = server.send(
        &what,
        server
            .client
            .post(server.endpoint(&["api", "admin", "releases"]))
            .header(CONTENT_TYPE, "application/json")
            .body(bytes.clone()),
    )?;
    println!(
        "release {}: {} (manifest_sha256 {})",
        release.version,
        if status == 201 {
            "published"
        } else {
            "already published, identical"
        },
        text(&answer, "manifest_sha256")
    );

    // The answer lists what the server still lacks; an artifact it already holds is not re-sent.
    let lacking = answer
        .get("missing_artifacts")
        .and_then(Value::as_array)
        .map(|_| string_list(answer.get("missing_artifacts")));
    for (path, artifact) in &uploads {
        let stored = if lacking
            .as_ref()
            .is_some_and(|lacking| !lacking.contains(&artifact.sha256))
        {
            "already stored"
        } else {
            let what = format!("upload {} ({})", path.display(), artifact.platform);
            let url = server.endpoint(&["api", "admin", "artifacts", &artifact.sha256]);
            match server.upload(&what, &url, path, artifact.size)? {
                201 => "stored",
                _ => "already stored",
            }
        };
        println!(
            "artifact {}: {stored} ({}, {} bytes)",
            artifact.platform,
            path.display(),
            artifact.size
        );
    }

    // Completeness, as the server sees it now (other machines may have uploaded artifacts too).
    let (_, listing) = server.send(
        &format!("list releases (after publishing {})", release.version),
        server
            .client
            .get(server.endpoint(&["api", "admin", "releases"])),
    )?;
    let version = release.version.to_string();
    let missing = missing_from_listing(&listing, &version).unwrap_or_else(|| {
        // Not in the listing (should not happen): what the publish answer said, minus uploads.
        string_list(answer.get("missing_artifacts"))
            .into_iter()
            .filter(|sha| !uploads.iter().any(|(_, a)| &a.sha256 == sha))
            .collect()
    });
    let total = release.artifacts.len();
    if missing.is_empty() {
        println!("release {version} is complete: all {total} artifact(s) are stored");
    } else {
        println!(
            "release {version} is INCOMPLETE: {} of {total} artifact(s) missing:",
            missing.len()
        );
        for sha in &missing {
            let platform = release
                .artifacts
                .iter()
                .find(|a| &a.sha256 == sha)
                .map_or("?", |a| a.platform.as_str());
            println!("  {platform} sha256 {sha}");
        }
        println!(
            "upload them with: worker-release publish {} --artifact PATH",
            args.release.display()
        );
    }
    Ok(())
}

pub fn promote(args: PromoteArgs) -> Result<()> {
    let reason = args.reason.unwrap_or_default();
    if args.force && reason.trim().is_empty() {
        bail!("--override needs a non-empty --reason (it is kept in the audit trail)");
    }
    let body = json!({
        "version": args.version.to_string(),
        "percent": args.percent,
        "reason": reason,
        "override": args.force,
        "minimum_version": args.minimum_version.map(|v| v.to_string()),
        "urgent": args.urgent,
    });
    let what = format!("promote {} {}", args.channel, args.version);
    channel_action(&args.server, &args.channel, "promote", &what, &body)
}

pub fn halt(args: HaltArgs) -> Result<()> {
    let what = format!("halt {}", args.channel);
    let body = json!({ "reason": args.reason });
    channel_action(&args.server, &args.channel, "halt", &what, &body)
}

pub fn resume(args: ResumeArgs) -> Result<()> {
    let what = format!("resume {}", args.channel);
    let body = json!({ "reason": args.reason.unwrap_or_default() });
    channel_action(&args.server, &args.channel, "resume", &what, &body)
}

pub fn rollback(args: RollbackArgs) -> Result<()> {
    let path = &args.directive;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = Signed::<Rollback>::from_slice(&bytes)
        .with_context(|| format!("rollback directive {}", path.display()))?;
    let directive: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("rollback directive {}", path.display()))?;
    let what = format!("rollback {} to {}", args.channel, doc.signed.to);
    let body = json!({ "directive": directive, "reason": args.reason.unwrap_or_default() });
    channel_action(&args.server, &args.channel, "rollback", &what, &body)
}

/// POST /api/admin/channels/<channel>/<action>, then show the channel summary it answers with.
fn channel_action(
    args: &ServerArgs,
    channel: &str,
    action: &str,
    what: &str,
    body: &Value,
) -> Result<()> {
    let server = Server::new(args)?;
    let url = server.endpoint(&["api", "admin", "channels", channel, action]);
    let (_, summary) = server.send(what, server.client.post(url).json(body))?;
    println!("{what}: done");
    print!(
        "{}",
        format_channels(std::slice::from_ref(&summary), Timestamp::now())
    );
    Ok(())
}

pub fn publish_root(args: PublishRootArgs) -> Result<()> {
    let path = &args.root;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = Signed::<Root>::from_slice(&bytes)
        .with_context(|| format!("root document {}", path.display()))?;
    let server = Server::new(&args.server)?;
    let what = format!("publish root {}", doc.signed.version);
    let (status, answer) = server.send(
        &what,
        server
            .client
            .post(server.endpoint(&["api", "admin", "roots"]))
            .header(CONTENT_TYPE, "application/json")
            .body(bytes),
    )?;
    println!(
        "root version {}: {}",
        text(&answer, "version"),
        if status == 201 {
            "published"
        } else {
            "accepted"
        }
    );
    Ok(())
}

pub fn status(args: StatusArgs) -> Result<()> {
    let server = Server::new(&args.server)?;
    let (_, status) = server.send(
        "status",
        server
            .client
            .get(server.endpoint(&["api", "admin", "status"])),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", format_status(&status, Timestamp::now()));
    }
    Ok(())
}

pub fn audit(args: AuditArgs) -> Result<()> {
    let server = Server::new(&args.server)?;
    let mut url = server.endpoint(&["api", "admin", "audit"]);
    url.query_pairs_mut()
        .append_pair("limit", &args.limit.to_string());
    let (_, audit) = server.send("audit", server.client.get(url))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        print!("{}", format_audit(&audit));
    }
    Ok(())
}

/// A connection to the admin API: base URL, admin token, HTTP client.
struct Server {
    base: Url,
    auth: HeaderValue,
    client: Client,
}

impl Server {
    fn new(args: &ServerArgs) -> Result<Self> {
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
        let client = builder.build().context("setting up the HTTP client")?;
        Ok(Server {
            base: args.server.clone(),
            auth,
            client,
        })
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        endpoint(&self.base, segments)
    }

    /// Sends an API call (authenticated, with the total timeout) and decodes the JSON answer.
    fn send(&self, what: &str, request: RequestBuilder) -> Result<(u16, Value)> {
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
    fn upload(&self, what: &str, url: &Url, path: &Path, size: u64) -> Result<u16> {
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

fn parse_channel(text: &str) -> std::result::Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.chars().any(char::is_control) {
        return Err(format!("{text:?} is not a channel name"));
    }
    Ok(text.to_owned())
}

fn parse_non_empty(text: &str) -> std::result::Result<String, String> {
    if text.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(text.to_owned())
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

/// The first non-empty line, trimmed.
fn token_from_file(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| !line.is_empty())
}

/// The `missing_artifacts` of `version` in a `GET /api/admin/releases` answer.
fn missing_from_listing(listing: &Value, version: &str) -> Option<Vec<String>> {
    listing
        .get("releases")?
        .as_array()?
        .iter()
        .find(|r| r.get("version").and_then(Value::as_str) == Some(version))
        .map(|r| string_list(r.get("missing_artifacts")))
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn format_status(status: &Value, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str("channels\n");
    out.push_str(&indent(&format_channels(list(status, "channels"), now)));
    out.push_str("\nfleet by version\n");
    let fleet: Vec<Vec<String>> = list(status, "fleet")
        .iter()
        .map(|f| {
            vec![
                text(f, "channel"),
                text(f, "version"),
                text(f, "workers"),
                text(f, "stale"),
            ]
        })
        .collect();
    out.push_str(&indent(&table(
        &["CHANNEL", "VERSION", "WORKERS", "STALE"],
        &fleet,
    )));
    out.push_str("\nfailures in the last hour\n");
    let failures: Vec<Vec<String>> = list(status, "failures_last_hour")
        .iter()
        .map(|f| {
            vec![
                text(f, "channel"),
                text(f, "version"),
                text(f, "outcome"),
                text(f, "reason"),
                text(f, "count"),
            ]
        })
        .collect();
    out.push_str(&indent(&table(
        &["CHANNEL", "VERSION", "OUTCOME", "REASON", "COUNT"],
        &failures,
    )));
    out.push_str(&format!(
        "\ntotal workers: {}\nroot version: {}\n",
        text(status, "workers_total"),
        text(status, "root_version")
    ));
    out
}

/// Channel summaries as a table.
fn format_channels(channels: &[Value], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            let mut version = text(c, "version");
            if c.get("rollback_to").is_some_and(|v| !v.is_null()) {
                version.push_str(" (rollback)");
            }
            let rollout = match c.get("percent") {
                Some(Value::Number(n)) => format!("{n}%"),
                _ => "-".to_owned(),
            };
            let halted = if c.get("halted").and_then(Value::as_bool) == Some(true) {
                match c.get("halt_reason").and_then(Value::as_str) {
                    Some(reason) if !reason.trim().is_empty() => {
                        format!("yes: {}", sanitize(reason))
                    }
                    _ => "yes".to_owned(),
                }
            } else {
                "no".to_owned()
            };
            let expires = match c.get("expires").and_then(Value::as_str) {
                Some(expires) => expires_in(expires, now),
                None => "-".to_owned(),
            };
            vec![
                text(c, "channel"),
                version,
                rollout,
                halted,
                text(c, "serial"),
                expires,
            ]
        })
        .collect();
    table(
        &[
            "CHANNEL",
            "VERSION",
            "ROLLOUT",
            "HALTED",
            "SERIAL",
            "EXPIRES IN",
        ],
        &rows,
    )
}

fn format_audit(audit: &Value) -> String {
    let rows: Vec<Vec<String>> = list(audit, "entries")
        .iter()
        .map(|e| {
            ["at", "kind", "actor", "channel", "version", "detail"]
                .iter()
                .map(|field| text(e, field))
                .collect()
        })
        .collect();
    table(
        &["AT", "KIND", "ACTOR", "CHANNEL", "VERSION", "DETAIL"],
        &rows,
    )
}

/// "2d 3h", "5h 12m", "12m", "40s", or "EXPIRED".
fn expires_in(expires: &str, now: Timestamp) -> String {
    let Ok(at) = expires.parse::<Timestamp>() else {
        return sanitize(expires);
    };
    let secs = at.unix() - now.unix();
    if secs <= 0 {
        return "EXPIRED".to_owned();
    }
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

/// Left-aligned columns two spaces apart; "(none)" without rows.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A field for display: strings bare, booleans yes/no, null, empty or missing as "-".
fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => sanitize(s),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(other) => sanitize(&other.to_string()),
    }
}

/// Server-supplied text, made safe for one terminal line.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
        assert!(parse_channel("..").is_err());
        assert!(parse_channel("").is_err());
        assert_eq!(parse_channel("stable").unwrap(), "stable");
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

    fn status_json() -> Value {
        json!({
            "root_version": 2,
            "channels": [
                {"channel": "canary", "version": "1.4.0", "percent": 100, "halted": false,
                 "halt_reason": null, "serial": 7, "issued_at": "2026-03-01T00:00:00Z",
                 "expires": "2026-03-02T00:00:00Z", "minimum_version": "0.0.0",
                 "recommended_version": "1.4.0", "urgent": false, "rollback_to": null},
                {"channel": "stable", "version": "1.3.2", "percent": 10, "halted": true,
                 "halt_reason": "canary failures", "serial": 12,
                 "issued_at": "2026-02-28T00:00:00Z", "expires": "2026-02-28T12:00:00Z",
                 "minimum_version": "0.0.0", "recommended_version": "1.3.2", "urgent": false,
                 "rollback_to": "1.3.2"}
            ],
            "fleet": [
                {"channel": "canary", "version": "1.4.0", "workers": 2, "stale": 0},
                {"channel": "stable", "version": "1.3.2", "workers": 1, "stale": 1}
            ],
            "failures_last_hour": [],
            "workers_total": 3
        })
    }

    #[test]
    fn status_tables() {
        let now: Timestamp = "2026-03-01T01:30:00Z".parse().unwrap();
        let expected = "\
channels
  CHANNEL  VERSION           ROLLOUT  HALTED                SERIAL  EXPIRES IN
  canary   1.4.0             100%     no                    7       22h 30m
  stable   1.3.2 (rollback)  10%      yes: canary failures  12      EXPIRED

fleet by version
  CHANNEL  VERSION  WORKERS  STALE
  canary   1.4.0    2        0
  stable   1.3.2    1        1

failures in the last hour
  (none)

total workers: 3
root version: 2
";
        assert_eq!(format_status(&status_json(), now), expected);
    }

    #[test]
    fn status_tolerates_missing_fields() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let status = json!({
            "channels": [{"channel": "beta", "version": null, "halted": false}],
            "failures_last_hour": [{"channel": "beta", "version": "1.0.0",
                "outcome": "failure", "reason": "hash_mismatch\nx", "count": 4}]
        });
        let out = format_status(&status, now);
        assert!(
            out.contains("  beta     -        -        no      -       -\n"),
            "{out}"
        );
        assert!(
            out.contains("  beta     1.0.0    failure  hash_mismatch x  4\n"),
            "{out}"
        );
        assert!(out.contains("total workers: -\n"), "{out}");
    }

    #[test]
    fn audit_table() {
        let audit = json!({"entries": [
            {"at": "2026-03-01T00:00:05Z", "kind": "report", "actor": "w-1", "channel": "canary",
             "version": "1.4.0", "detail": "failure hash_mismatch 1.3.2->1.4.0 w-1"},
            {"at": "2026-03-01T00:00:00Z", "kind": "promote", "actor": "admin",
             "channel": "canary", "version": "1.4.0", "detail": ""}
        ]});
        let expected = "\
AT                    KIND     ACTOR  CHANNEL  VERSION  DETAIL
2026-03-01T00:00:05Z  report   w-1    canary   1.4.0    failure hash_mismatch 1.3.2->1.4.0 w-1
2026-03-01T00:00:00Z  promote  admin  canary   1.4.0    -
";
        assert_eq!(format_audit(&audit), expected);
        assert_eq!(format_audit(&json!({"entries": []})), "(none)\n");
    }

    #[test]
    fn expiry_in_words() {
        let now: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        assert_eq!(expires_in("2026-03-03T05:00:00Z", now), "2d 5h");
        assert_eq!(expires_in("2026-03-01T05:07:00Z", now), "5h 7m");
        assert_eq!(expires_in("2026-03-01T00:12:30Z", now), "12m");
        assert_eq!(expires_in("2026-03-01T00:00:40Z", now), "40s");
        assert_eq!(expires_in("2026-03-01T00:00:00Z", now), "EXPIRED");
        assert_eq!(expires_in("tomorrow", now), "tomorrow");
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
        assert_eq!(crate::reason_label(&error).as_deref(), Some("soak"));

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
        assert_eq!(crate::reason_label(&anyhow!("plain")), None);
    }

    #[test]
    fn missing_artifacts_from_listing() {
        let listing = json!({"releases": [
            {"version": "1.3.2", "complete": true, "missing_artifacts": []},
            {"version": "1.4.0", "complete": false, "missing_artifacts": ["ab", "cd"]}
        ]});
        assert_eq!(
            missing_from_listing(&listing, "1.4.0"),
            Some(vec!["ab".to_owned(), "cd".to_owned()])
        );
        assert_eq!(missing_from_listing(&listing, "1.3.2"), Some(vec![]));
        assert_eq!(missing_from_listing(&listing, "9.9.9"), None);
    }

    #[test]
    fn long_bodies_are_truncated() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
