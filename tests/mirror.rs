//! Fakes for parties outside our control: [`HostileMirror`] (an artifact mirror feeding the agent
//! bad bytes, or good ones while it watches what the agent sends) and [`ForgingProxy`] (a
//! compromised update server serving forged or oversized documents, or a forged handshake).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a [`HostileMirror`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The signed artifact, byte for byte (a mirror that only snoops: see
    /// [`HostileMirror::saw_authorization`]).
    Faithful,
    /// The signed length, but one byte (in the middle) differs from the signed artifact.
    Tampered,
    /// `Content-Length` and body 100 bytes shorter than the signed size, then it closes.
    Truncated,
    /// No `Content-Length`: the artifact, then garbage past the signed size, until the peer
    /// hangs up (bounded at the signed size + 64 MiB so it stops by itself).
    Oversized,
    /// The artifact's bytes, one every 200 ms (bounded at 10 minutes).
    Drip,
    /// [`Behaviour::Tampered`] for the first `n` requests, then [`Behaviour::Faithful`] (a
    /// transient corruption, e.g. on one CDN node).
    TamperedFirst(usize),
    /// Always `500 Internal Server Error`.
    Error500,
    /// Accepts, reads the request, never answers (until the mirror is dropped).
    Silent,
}

/// How much an [`Behaviour::Oversized`] mirror sends past the signed size at most.
pub const OVERSIZED_EXTRA: u64 = 64 * 1024 * 1024;

/// A fake HTTP/1.1 artifact mirror on `127.0.0.1:0`.
///
/// It stands in for something outside our control: a CDN or mirror the release's artifact URL
/// points to, which may serve whatever it likes. The agent must not trust it, so this fake is
/// used to feed the agent bad bytes (see [`Behaviour`]) and check that it refuses them.
///
/// One thread accepts, one thread serves each connection (one request per connection,
/// `Connection: close`). Every loop is bounded and watches a stop flag; dropping the mirror
/// sets the flag, shuts the open sockets down and joins every thread.
#[derive(Debug)]
pub struct HostileMirror {
    url: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    behaviour: Behaviour,
    artifact: PathBuf,
    size: u64,
    stop: AtomicBool,
    requests: AtomicUsize,
    /// The request target of every request, in order.
    paths: Mutex<Vec<String>>,
    authorization_seen: AtomicBool,
    /// Open connections (a clone of each socket, to shut it down) and their threads.
    connections: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl HostileMirror {
    /// Starts a mirror serving (a corruption of) the file `artifact` at [`HostileMirror::url`].
    pub fn start(behaviour: Behaviour, artifact: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mirror");
        Self::start_on(listener, behaviour, artifact)
    }

    /// Like [`HostileMirror::start`], on a loopback `listener` the test chose the port of.
    pub fn start_on(listener: TcpListener, behaviour: Behaviour, artifact: &Path) -> Self {
        let size = std::fs::metadata(artifact)
            .unwrap_or_else(|e| panic!("{}: {e}", artifact.display()))
            .len();
        assert!(size > 200, "the artifact is too small to corrupt");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!(
            "http://{}/mirror/worker-agent",
            listener.local_addr().expect("address")
        );
        let shared = Arc::new(Shared {
            behaviour,
            artifact: artifact.to_owned(),
            size,
            stop: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            paths: Mutex::new(Vec::new()),
            authorization_seen: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
        });
        let acceptor = std::thread::spawn({
            let shared = shared.clone();
            move || accept_loop(&listener, &shared)
        });
        HostileMirror {
            url,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The artifact URL to sign into a release.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The mirror's base URL for `worker-release sign-release --mirror` (the artifact is then
    /// asked for as `BASE/<sha256>`; this fake serves its one artifact at any path).
    pub fn base_url(&self) -> &str {
        self.url.strip_suffix("/worker-agent").unwrap_or(&self.url)
    }

    /// The request target (path) of each request received so far, in order.
    pub fn requested_paths(&self) -> Vec<String> {
        self.shared
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Requests received (and read) so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Whether any request carried an `Authorization` header (a leaked token).
    pub fn saw_authorization(&self) -> bool {
        self.shared.authorization_seen.load(Ordering::SeqCst)
    }
}

impl Drop for HostileMirror {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(
            &mut *self
                .shared
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (socket, _) in &connections {
            let _ = socket.shutdown(Shutdown::Both);
        }
        for (_, thread) in connections {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let Ok(handle) = stream.try_clone() else {
                    continue;
                };
                let thread = std::thread::spawn({
                    let shared = shared.clone();
                    move || serve(stream, &shared)
                });
                shared
                    .connections
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((handle, thread));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads the request head (bounded in size and time); `None` if there is none.
fn read_head(stream: &mut TcpStream, shared: &Shared) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if shared.stop.load(Ordering::SeqCst) || Instant::now() > deadline || head.len() > 65_536 {
            return None;
        }
        match stream.read(&mut buffer) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Some(head) = read_head(&mut stream, shared) else {
        return;
    };
    if let Some(target) = head.lines().next().and_then(|l| l.split(' ').nth(1)) {
        shared
            .paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(target.to_owned());
    }
    let seen = shared.requests.fetch_add(1, Ordering::SeqCst);
    if head
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("authorization:"))
    {
        shared.authorization_seen.store(true, Ordering::SeqCst);
    }
    // A blocked write wakes up now and then to look at the stop flag (and Drop shuts the
    // socket down anyway).
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let size = shared.size;
    let _ = match shared.behaviour {
        Behaviour::Faithful => send_head(&mut stream, "200 OK", Some(size))
            .and_then(|()| send_body(&mut stream, shared, size, None)),
        Behaviour::Tampered => send_head(&mut stream, "200 OK", Some(size))
            .and_then(|()| send_body(&mut stream, shared, size, Some(size / 2))),
        Behaviour::TamperedFirst(n) => {
            let flip = (seen < n).then_some(size / 2);
            send_head(&mut stream, "200 OK", Some(size))
                .and_then(|()| send_body(&mut stream, shared, size, flip))
        }
        Behaviour::Truncated => send_head(&mut stream, "200 OK", Some(size - 100))
            .and_then(|()| send_body(&mut stream, shared, size - 100, None)),
        Behaviour::Oversized => send_head(&mut stream, "200 OK", None)
            .and_then(|()| send_body(&mut stream, shared, size + OVERSIZED_EXTRA, None)),
        Behaviour::Drip => {
            send_head(&mut stream, "200 OK", Some(size)).and_then(|()| drip(&mut stream, shared))
        }
        Behaviour::Error500 => {
            let body = "mirror on fire\n";
            write_all(
                &mut stream,
                shared,
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        }
        Behaviour::Silent => {
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
    };
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

fn send_head(stream: &mut TcpStream, status: &str, length: Option<u64>) -> std::io::Result<()> {
    let length = length.map_or_else(String::new, |n| format!("Content-Length: {n}\r\n"));
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n{length}Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())
}

/// Writes all of `bytes`, retrying timed-out writes until the mirror stops.
fn write_all(stream: &mut TcpStream, shared: &Shared, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        if shared.stop.load(Ordering::SeqCst) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `total` bytes: the artifact's (with the byte at `flip` inverted), then `0xA5` past its
/// end.
fn send_body(
    stream: &mut TcpStream,
    shared: &Shared,
    total: u64,
    flip: Option<u64>,
) -> std::io::Result<()> {
    let mut file = File::open(&shared.artifact)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < total {
        let want = usize::try_from((total - offset).min(buffer.len() as u64)).unwrap_or(0);
        let mut got = file.read(&mut buffer[..want])?;
        if got == 0 {
            // Past the artifact's end.
            buffer[..want].fill(0xa5);
            got = want;
        }
        if let Some(at) = flip.filter(|at| (offset..offset + got as u64).contains(at)) {
            let i = usize::try_from(at - offset).unwrap_or(0);
            buffer[i] ^= 0xff;
        }
        write_all(stream, shared, &buffer[..got])?;
        offset += got as u64;
    }
    Ok(())
}

fn drip(stream: &mut TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut file = File::open(&shared.artifact)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut byte = [0u8; 1];
    while Instant::now() < deadline {
        if file.read(&mut byte)? == 0 {
            return Ok(());
        }
        write_all(stream, shared, &byte)?;
        // Sleep in small steps so a drop is noticed at once.
        let wake = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wake {
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// What a [`ForgingProxy`] answers `GET /api/worker-updates/latest` with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatestAnswer {
    /// This forged body (with its `Content-Length`).
    Forged(Vec<u8>),
    /// The real server's answer behind `padding` bytes of JSON whitespace: still a genuine,
    /// valid answer, only too big. Sent chunked, without a `Content-Length`, 64 KiB at a time
    /// until the agent hangs up or all of it is sent (so it ends by itself).
    Padded(u64),
    /// The real server's answer, passed through unchanged (the server behaves again).
    Genuine,
    /// The real server's answer with its statement's serial replaced by a new, higher one on
    /// every answer (so its signature no longer verifies), answered at once: a hostile server
    /// flooding the agent with "new" statements.
    NewSerials,
    /// The next real `200` answer, with its ETag, but this release inside (mix and match: a
    /// genuinely signed release, as JSON, the statement does not pin); then
    /// [`LatestAnswer::Genuine`].
    SwapReleaseOnce(Vec<u8>),
}

/// A fake for a compromised update server (or a man in the middle), which is outside our
/// control: it answers `GET /api/worker-updates/latest` as the test chooses ([`LatestAnswer`],
/// changeable while it runs), the registration handshake too when told to
/// ([`ForgingProxy::answer_register`]), and passes every other request (register, report,
/// roots, artifacts) through to the real server. The real server verifies what it stores and serves,
/// so forged signatures or oversized answers can only reach an agent this way.
///
/// Each connection is served on its own thread (a long poll passed through must not hold up
/// the agent's reports); every thread is bounded by its socket and upstream timeouts.
#[derive(Debug)]
pub struct ForgingProxy {
    url: String,
    stop: Arc<AtomicBool>,
    forgery: Arc<Forgery>,
    thread: Option<JoinHandle<()>>,
}

/// What the proxy's connection threads share.
#[derive(Debug)]
struct Forgery {
    /// The current answer to `/latest`.
    latest: Mutex<LatestAnswer>,
    /// How many `/latest` requests got a [`LatestAnswer::Padded`] answer (begun).
    padded_answers: AtomicUsize,
    /// The forged answer to `POST /api/workers/register` (none: the real server's).
    register: Mutex<Option<Vec<u8>>>,
    /// How many registrations got the forged answer.
    forged_registrations: AtomicUsize,
    /// How many `/latest` requests arrived.
    latest_requests: AtomicUsize,
    /// The serial of the last [`LatestAnswer::NewSerials`] answer.
    serial: AtomicUsize,
    /// How many answers were changed ([`LatestAnswer::NewSerials`],
    /// [`LatestAnswer::SwapReleaseOnce`]).
    altered_answers: AtomicUsize,
    /// How many of the next artifact downloads get one byte flipped.
    corrupt_artifacts: AtomicUsize,
}

impl ForgingProxy {
    /// Starts the proxy in front of `upstream`, answering `/latest` with `forged_latest`.
    pub fn start(upstream: &str, forged_latest: Vec<u8>) -> Self {
        Self::answering(upstream, LatestAnswer::Forged(forged_latest))
    }

    /// Starts the proxy in front of `upstream`, answering `/latest` with `latest`.
    pub fn answering(upstream: &str, latest: LatestAnswer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let forgery = Arc::new(Forgery {
            latest: Mutex::new(latest),
            padded_answers: AtomicUsize::new(0),
            register: Mutex::new(None),
            forged_registrations: AtomicUsize::new(0),
            latest_requests: AtomicUsize::new(0),
            // Far above what a test's server signs, so each is "newer".
            serial: AtomicUsize::new(1_000_000),
            altered_answers: AtomicUsize::new(0),
            corrupt_artifacts: AtomicUsize::new(0),
        });
        let upstream = Arc::new(upstream.trim_end_matches('/').to_owned());
        let thread = std::thread::spawn({
            let (stop, forgery) = (stop.clone(), forgery.clone());
            move || {
                // Longer than any long poll the agent asks for; bounded all the same.
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(120))
                    .build()
                    .expect("HTTP client");
                // Bounded: the proxy lives as long as its test (at most 10 minutes).
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (client, upstream) = (client.clone(), upstream.clone());
                            let (stop, forgery) = (stop.clone(), forgery.clone());
                            std::thread::spawn(move || {
                                let _ = proxy_one(stream, &client, &upstream, &forgery, &stop);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        ForgingProxy {
            url,
            stop,
            forgery,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers the following `/latest` requests with `latest`.
    pub fn answer_latest(&self, latest: LatestAnswer) {
        *self
            .forgery
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = latest;
    }

    /// How many `/latest` requests got a [`LatestAnswer::Padded`] answer so far.
    pub fn padded_answers(&self) -> usize {
        self.forgery.padded_answers.load(Ordering::SeqCst)
    }

    /// Answers the following registrations (`POST /api/workers/register`) with `forged`, or
    /// passes them through again with `None` (the real server registers the worker either way).
    pub fn answer_register(&self, forged: Option<Vec<u8>>) {
        *self
            .forgery
            .register
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = forged;
    }

    /// How many registrations got the forged answer so far.
    pub fn forged_registrations(&self) -> usize {
        self.forgery.forged_registrations.load(Ordering::SeqCst)
    }

    /// Flips one byte (in the middle) of each of the next `n` artifact downloads passed through
    /// (a transient corruption on the path).
    pub fn corrupt_next_artifacts(&self, n: usize) {
        self.forgery.corrupt_artifacts.store(n, Ordering::SeqCst);
    }

    /// How many `/latest` requests arrived so far.
    pub fn latest_requests(&self) -> usize {
        self.forgery.latest_requests.load(Ordering::SeqCst)
    }

    /// How many `/latest` answers were altered so far ([`LatestAnswer::NewSerials`],
    /// [`LatestAnswer::SwapReleaseOnce`]).
    pub fn altered_answers(&self) -> usize {
        self.forgery.altered_answers.load(Ordering::SeqCst)
    }
}

impl Drop for ForgingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `genuine` behind `padding` spaces as a chunked body, 64 KiB per chunk; stops early
/// when the proxy stops or the peer hangs up (a write error).
fn send_padded(
    stream: &mut TcpStream,
    padding: u64,
    genuine: &[u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // An agent that stops reading (without hanging up) ends the answer, too.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    let spaces = vec![b' '; 64 * 1024];
    let mut sent = 0u64;
    while sent < padding {
        if stop.load(Ordering::SeqCst) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = usize::try_from((padding - sent).min(spaces.len() as u64)).unwrap_or(0);
        write!(stream, "{n:x}\r\n")?;
        stream.write_all(&spaces[..n])?;
        stream.write_all(b"\r\n")?;
        sent += n as u64;
    }
    write!(stream, "{:x}\r\n", genuine.len())?;
    stream.write_all(genuine)?;
    stream.write_all(b"\r\n0\r\n\r\n")?;
    stream.flush()
}

fn proxy_one(
    mut stream: TcpStream,
    client: &reqwest::blocking::Client,
    upstream: &str,
    forgery: &Forgery,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("GET").to_owned(),
        parts.next().unwrap_or("/").to_owned(),
    );
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
            if name == "content-length" {
                length = value.parse().unwrap_or(0);
            }
            if matches!(
                name.as_str(),
                "authorization" | "content-type" | "range" | "if-none-match"
            ) {
                headers.push((name, value));
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let is_latest = method == "GET" && target.starts_with("/api/worker-updates/latest");
    if is_latest {
        forgery.latest_requests.fetch_add(1, Ordering::SeqCst);
    }
    let latest = is_latest.then(|| {
        forgery
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    });
    if let Some(LatestAnswer::Padded(padding)) = latest {
        forgery.padded_answers.fetch_add(1, Ordering::SeqCst);
        // The genuine answer in full (no ETag sent: a 200, never a 304).
        headers.retain(|(name, _)| name != "if-none-match");
        let genuine = forward(client, upstream, &method, &target, &headers, body).body;
        return send_padded(&mut stream, padding, &genuine, stop);
    }
    let is_register = method == "POST" && target.starts_with("/api/workers/register");
    let forged_register = is_register
        .then(|| {
            forgery
                .register
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
        .flatten();
    if forged_register.is_some() {
        forgery.forged_registrations.fetch_add(1, Ordering::SeqCst);
    }
    if latest == Some(LatestAnswer::NewSerials) {
        // An answer of its own at once, never a 304 (no `If-None-Match` passed on).
        headers.retain(|(name, _)| name != "if-none-match");
    }
    let answer = match (latest, forged_register) {
        (Some(LatestAnswer::Forged(forged)), _) => Answer {
            status: 200,
            content_type: "application/json".to_owned(),
            body: forged,
            etag: None,
        },
        // Altered once the upstream answered (a long poll may have been held meanwhile).
        (Some(_), _) => alter(
            forward(client, upstream, &method, &target, &headers, body),
            forgery,
        ),
        // A man in the middle: the real server registers the worker, the worker reads the forgery.
        (None, Some(forged)) => {
            let _ = forward(client, upstream, &method, &target, &headers, body);
            Answer {
                status: 200,
                content_type: "application/json".to_owned(),
                body: forged,
                etag: None,
            }
        }
        (None, None) => {
            let mut answer = forward(client, upstream, &method, &target, &headers, body);
            let corrupt = method == "GET"
                && target.starts_with("/api/worker-updates/artifacts/")
                && answer.status == 200
                && !answer.body.is_empty()
                && forgery
                    .corrupt_artifacts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if corrupt {
                let middle = answer.body.len() / 2;
                answer.body[middle] ^= 0xff;
            }
            answer
        }
    };
    let etag = answer
        .etag
        .as_ref()
        .map_or_else(String::new, |etag| format!("ETag: {etag}\r\n"));
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\n{etag}Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    )?;
    stream.write_all(&answer.body)?;
    stream.flush()
}

/// Applies the proxy's current [`LatestAnswer`] to the upstream's `200` answer to `/latest`.
fn alter(mut answer: Answer, forgery: &Forgery) -> Answer {
    let mut latest = forgery
        .latest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
        return answer;
    };
    if answer.status != 200 || json["channel"].is_null() {
        return answer;
    }
    match &*latest {
        LatestAnswer::NewSerials => {
            let serial = forgery.serial.fetch_add(1, Ordering::SeqCst) + 1;
            json["channel"]["signed"]["serial"] = serial.into();
            answer.etag = None;
        }
        LatestAnswer::SwapReleaseOnce(release) => {
            json["release"] = serde_json::from_slice(release).expect("release JSON");
            *latest = LatestAnswer::Genuine;
        }
        _ => return answer,
    }
    forgery.altered_answers.fetch_add(1, Ordering::SeqCst);
    answer.body = serde_json::to_vec(&json).expect("JSON");
    answer
}

/// An HTTP answer the proxy passes on.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// The upstream's `ETag`, passed on.
    etag: Option<String>,
}

/// Passes one request on to `upstream`: its status, content type, body and ETag (`502` when
/// the upstream does not answer).
fn forward(
    client: &reqwest::blocking::Client,
    upstream: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut request = client
        .request(method, format!("{upstream}{target}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send() {
        Ok(response) => {
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type =
                header("content-type").unwrap_or_else(|| "application/octet-stream".to_owned());
            let etag = header("etag");
            Answer {
                status,
                content_type,
                etag,
                body: response.bytes().map(|b| b.to_vec()).unwrap_or_default(),
            }
        }
        Err(_) => Answer {
            status: 502,
            content_type: "text/plain".to_owned(),
            body: b"upstream unreachable".to_vec(),
            etag: None,
        },
    }
}
