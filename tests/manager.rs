//! [`FakeManager`]: a test fixture playing the ESUP Manager's part (it is not a product). The
//! Manager is outside our control: this stands in for it on `127.0.0.1:0`, checking what a real
//! Manager 1.7 checks (token, `X-Runner-Version`, the registration body) and recording what the
//! agent sends. It also serves a directory of media files, standing in for the video platform's
//! media host that `source_url` points to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// A runner as registered.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The registration body.
    pub body: Value,
    /// The `X-Runner-Version` header.
    pub version_header: String,
    /// Heartbeats received since the registration.
    pub heartbeats: usize,
    /// The last availability reported.
    pub availability: String,
}

#[derive(Debug, Default)]
struct Shared {
    token: String,
    runners: Mutex<HashMap<String, Registered>>,
    registrations: AtomicUsize,
    completions: Mutex<Vec<Value>>,
    completion_calls: AtomicUsize,
    fail_completions: AtomicUsize,
    down: AtomicBool,
    media_dir: PathBuf,
    media_requests: AtomicUsize,
    redirects: AtomicUsize,
}

/// The fake Manager. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeManager {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "detail": message }))).into_response()
}

/// A refusal, answered as `{"detail": ...}`.
type Refusal = (StatusCode, String);

fn refusal(status: StatusCode, message: &str) -> Refusal {
    (status, message.to_owned())
}

fn refuse((status, message): Refusal) -> Response {
    detail(status, &message)
}

impl Shared {
    fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.down.load(Ordering::SeqCst) {
            return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "manager down"));
        }
        let token = headers
            .get("x-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_owned)
            });
        match token {
            None => Err(refusal(
                StatusCode::UNAUTHORIZED,
                "Missing authentication token",
            )),
            Some(t) if t == self.token => Ok(()),
            Some(_) => Err(refusal(
                StatusCode::UNAUTHORIZED,
                "Invalid or expired token",
            )),
        }
    }

    /// The Manager 1.7.1 version rule: MAJOR.MINOR must be 1.7.
    fn check_version(headers: &HeaderMap) -> Result<String, Refusal> {
        let Some(version) = headers
            .get("x-runner-version")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(refusal(StatusCode::BAD_REQUEST, "Missing X-Runner-Version"));
        };
        let trimmed = version.trim_start_matches('v');
        let mut parts = trimmed.split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Unparsable X-Runner-Version",
            ));
        };
        let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
        if major.parse::<u32>().is_err() || minor.is_empty() {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Unparsable X-Runner-Version",
            ));
        }
        if major != "1" || minor != "7" {
            return Err(refusal(
                StatusCode::CONFLICT,
                &format!("Version mismatch: runner {version}, expected 1.7.x"),
            ));
        }
        Ok(version.to_owned())
    }
}

async fn register(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(refused) = shared.check(&headers) {
        return refuse(refused);
    }
    let version = match Shared::check_version(&headers) {
        Ok(v) => v,
        Err(refused) => return refuse(refused),
    };
    let url = body["url"].as_str().unwrap_or_default();
    let clean = reqwest::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && (u.path() == "/" || u.path().is_empty())
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
    }) && !url.ends_with('/');
    let Some(id) = body["id"].as_str().map(str::to_owned).filter(|_| clean) else {
        return detail(StatusCode::BAD_REQUEST, "invalid registration");
    };
    shared.registrations.fetch_add(1, Ordering::SeqCst);
    shared.runners.lock().expect("lock").insert(
        id,
        Registered {
            availability: body["availability"].as_str().unwrap_or_default().to_owned(),
            body,
            version_header: version,
            heartbeats: 0,
        },
    );
    Json(json!({ "status": "registered" })).into_response()
}

async fn heartbeat(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(refused) = shared.check(&headers) {
        return refuse(refused);
    }
    if let Err(refused) = Shared::check_version(&headers) {
        return refuse(refused);
    }
    let mut runners = shared.runners.lock().expect("lock");
    let Some(runner) = runners.get_mut(&id) else {
        return detail(StatusCode::NOT_FOUND, "Runner not found");
    };
    runner.heartbeats += 1;
    runner.availability = body["availability"].as_str().unwrap_or_default().to_owned();
    Json(json!({ "status": "ok" })).into_response()
}

async fn health(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match shared.check(&headers) {
        Ok(()) => Json(json!({ "status": "healthy" })).into_response(),
        Err(refused) => refuse(refused),
    }
}

async fn completion(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    shared.completion_calls.fetch_add(1, Ordering::SeqCst);
    if let Err(refused) = shared.check(&headers) {
        return refuse(refused);
    }
    let failing = shared.fail_completions.load(Ordering::SeqCst);
    if failing > 0 {
        shared.fail_completions.store(failing - 1, Ordering::SeqCst);
        return detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "completion store unavailable",
        );
    }
    shared.completions.lock().expect("lock").push(body);
    Json(json!({ "status": "ok" })).into_response()
}

async fn media(State(shared): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    shared.media_requests.fetch_add(1, Ordering::SeqCst);
    if name.contains('/') || name.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match tokio::fs::read(shared.media_dir.join(&name)).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/moved/{name}?to=URL`, any method: 307 to `URL` (a media host or a Manager that redirects).
async fn moved(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.redirects.fetch_add(1, Ordering::SeqCst);
    let to = query.get("to").cloned().unwrap_or_default();
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(axum::http::header::LOCATION, to)],
    )
        .into_response()
}

impl FakeManager {
    /// Starts it on `127.0.0.1:0`, accepting `token`, serving `media_dir` under `/media/`.
    pub fn start(token: &str, media_dir: &Path) -> Self {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            media_dir: media_dir.to_owned(),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/runner/register", post(register))
            .route("/runner/heartbeat/{id}", post(heartbeat))
            .route("/api/health", get(health))
            .route("/task/completion", post(completion))
            .route("/media/{name}", get(media))
            .route("/moved/{name}", any(moved))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (address_tx, address_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                address_tx
                    .send(listener.local_addr().expect("address"))
                    .expect("send address");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("manager started");
        FakeManager {
            url: format!("http://{address}"),
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `url/media/<name>`.
    pub fn media_url(&self, name: &str) -> String {
        format!("{}/media/{name}", self.url)
    }

    /// `url/moved/<name>?to=<to>`: answers 307 to `to`.
    pub fn moved_url(&self, name: &str, to: &str) -> String {
        let to: String = to
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        format!("{}/moved/{name}?to={to}", self.url)
    }

    /// Requests for `/media/*` so far.
    pub fn media_requests(&self) -> usize {
        self.shared.media_requests.load(Ordering::SeqCst)
    }

    /// Requests for `/moved/*` (redirects answered) so far.
    pub fn redirects(&self) -> usize {
        self.shared.redirects.load(Ordering::SeqCst)
    }

    /// The completion callback URL to give in `/task/run`.
    pub fn completion_url(&self) -> String {
        format!("{}/task/completion", self.url)
    }

    /// The runners registered now.
    pub fn runners(&self) -> HashMap<String, Registered> {
        self.shared.runners.lock().expect("lock").clone()
    }

    /// Registrations received so far (re-registrations included).
    pub fn registrations(&self) -> usize {
        self.shared.registrations.load(Ordering::SeqCst)
    }

    /// Completions accepted so far.
    pub fn completions(&self) -> Vec<Value> {
        self.shared.completions.lock().expect("lock").clone()
    }

    /// Completion calls received (failed ones included).
    pub fn completion_calls(&self) -> usize {
        self.shared.completion_calls.load(Ordering::SeqCst)
    }

    /// The next `n` completion calls fail with 500.
    pub fn fail_next_completions(&self, n: usize) {
        self.shared.fail_completions.store(n, Ordering::SeqCst);
    }

    /// While down, every Manager route answers 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Forgets every runner (a Manager restart): heartbeats get 404 until they re-register.
    pub fn forget_runners(&self) {
        self.shared.runners.lock().expect("lock").clear();
    }

    /// Waits until `check` holds, or panics after `limit`.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&FakeManager) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {limit:?} waiting for: {what}");
    }

    /// The completion of `task_id`, waiting up to `limit` for it.
    #[track_caller]
    pub fn completion_of(&self, task_id: &str, limit: Duration) -> Value {
        let mut found = None;
        self.wait_until(&format!("the completion of {task_id}"), limit, |m| {
            found = m
                .completions()
                .into_iter()
                .find(|c| c["task_id"] == task_id);
            found.is_some()
        });
        found.expect("found")
    }
}

impl Drop for FakeManager {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shared runner token the tests use (long, not a placeholder).
pub const RUNNER_TOKEN: &str = "e2e-runner-token-0123456789abcdef";

/// Environment that turns an agent's ESUP runner layer on against `manager`, instances from
/// `base_port` on loopback, tasks under `storage_dir`, short heartbeat and retry periods.
pub fn runner_env(
    manager: &FakeManager,
    base_port: u16,
    storage_dir: &Path,
) -> Vec<(String, String)> {
    [
        ("MANAGER_URL", format!("{}/", manager.url)),
        ("RUNNER_TOKEN", RUNNER_TOKEN.to_owned()),
        ("RUNNER_HOST", "127.0.0.1".to_owned()),
        ("RUNNER_LISTEN_HOST", "127.0.0.1".to_owned()),
        ("RUNNER_BASE_PORT", base_port.to_string()),
        ("RUNNER_BASE_NAME", "e2e".to_owned()),
        ("STORAGE_DIR", storage_dir.to_string_lossy().into_owned()),
        ("RUNNER_HEARTBEAT_SECS", "1".to_owned()),
        ("COMPLETION_RETRY_BASE_SECS", "0.5".to_owned()),
        ("RUNNER_DRAIN_TIMEOUT_SECS", "5".to_owned()),
        // The media host (this fixture) is on loopback, which sources may not reach by default.
        ("SOURCE_ALLOW_PRIVATE_NETWORKS", "1".to_owned()),
        // The test machine's disk may have less than the default 5 GB free.
        ("MIN_FREE_DISK_GB", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `base_port` such that `base_port .. base_port + count` are free now (checked by binding).
pub fn free_port_range(count: u16) -> u16 {
    for _ in 0..200 {
        let base = crate::fleet::free_port();
        if base.checked_add(count).is_none() {
            continue;
        }
        let all_free =
            (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no range of {count} free ports");
}

/// A client of a runner instance's API at `127.0.0.1:port`, sending the runner token.
pub fn runner_api(port: u16) -> crate::fleet::Api {
    crate::fleet::Api::new(&format!("http://127.0.0.1:{port}"), Some(RUNNER_TOKEN))
}

/// A `/task/run` body.
pub fn task_body(
    task_id: &str,
    task_type: &str,
    source_url: &str,
    parameters: Value,
    callback: &str,
) -> Value {
    json!({
        "task_id": task_id,
        "etab_name": "e2e university",
        "app_name": "pod",
        "app_version": null,
        "task_type": task_type,
        "source_url": source_url,
        "affiliation": null,
        "parameters": parameters,
        "notify_url": "",
        "completion_callback": callback,
    })
}

/// Generates a test clip with ffmpeg's lavfi sources: `seconds` of `testsrc2` at `width`x`height`
/// (25 fps) with a 440 Hz `sine` when `audio`.
#[track_caller]
pub fn make_clip(path: &Path, width: u32, height: u32, seconds: u32, audio: bool) {
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!(
        "testsrc2=size={width}x{height}:rate=25:duration={seconds}"
    ));
    if audio {
        command.args(["-f", "lavfi", "-i"]);
        command.arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={seconds}"
        ));
    }
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    if audio {
        command.args(["-c:a", "aac", "-shortest"]);
    }
    command.arg(path);
    let status = command
        .status()
        .expect("ffmpeg runs (install the Debian package ffmpeg; scripts/test.sh does)");
    assert!(
        status.success(),
        "ffmpeg could not generate {}",
        path.display()
    );
}

/// `ffprobe -show_format -show_streams` of `path`, as JSON.
#[track_caller]
pub fn probe(path: &Path) -> Value {
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
        .expect("ffprobe runs (install the Debian package ffmpeg; scripts/test.sh does)");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe JSON")
}

/// Duration in seconds of a probed file.
pub fn probed_duration(probe: &Value) -> f64 {
    probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_default()
}

/// `(width, height)` of the first video stream of a probed file.
pub fn probed_size(probe: &Value) -> Option<(u64, u64)> {
    probe["streams"]
        .as_array()?
        .iter()
        .find(|s| s["codec_type"] == "video")
        .and_then(|s| Some((s["width"].as_u64()?, s["height"].as_u64()?)))
}
