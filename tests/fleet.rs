//! Fixtures for server (and later agent) tests: a trust set with real keys and signatures, and a
//! real `update-server` process on 127.0.0.1:0 with its HTTP API.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use manifests::{
    Artifact, DocType, Key, PrivateKey, Release, Role, Roles, Rollback, Root, Signed, Timestamp,
    Version,
};

use crate::bin;

/// The platform agents of this build ask for.
pub const PLATFORM: &str = manifests::BUILD_PLATFORM;

/// Keys and a signed root, written to `dir`.
#[derive(Debug)]
pub struct Trust {
    /// Root key.
    pub root_key: PrivateKey,
    /// Release key.
    pub release_key: PrivateKey,
    /// Channel key (the server's).
    pub channel_key: PrivateKey,
    /// The root document (version 1).
    pub root: Signed<Root>,
    /// Where root.json is.
    pub root_path: PathBuf,
    /// Where the channel key file is.
    pub channel_key_path: PathBuf,
    /// Where the release key file is.
    pub release_key_path: PathBuf,
    dir: PathBuf,
}

fn key_entry(key: &PrivateKey) -> (String, Key) {
    let public = key.public();
    (
        public.keyid,
        Key {
            scheme: public.scheme,
            public: public.public,
            extra: BTreeMap::new(),
        },
    )
}

impl Trust {
    /// Generates keys and root version 1 in `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("keys")).expect("keys dir");
        let root_key = PrivateKey::generate("root").expect("key");
        let release_key = PrivateKey::generate("release").expect("key");
        let channel_key = PrivateKey::generate("channel").expect("key");
        for key in [&root_key, &release_key, &channel_key] {
            key.write_pair(&dir.join("keys")).expect("write key");
        }
        let root = Root {
            doc_type: DocType::Root,
            version: 1,
            expires: Timestamp::now().plus_secs(365 * 86_400),
            keys: [&root_key, &release_key, &channel_key]
                .into_iter()
                .map(key_entry)
                .collect(),
            roles: Roles {
                root: Role::new(vec![root_key.keyid()], 1),
                release: Role::new(vec![release_key.keyid()], 1),
                channel: Role::new(vec![channel_key.keyid()], 1),
                extra: BTreeMap::new(),
            },
            extra: BTreeMap::new(),
        };
        let root = Signed::sign(root, &[&root_key]).expect("sign root");
        let root_path = dir.join("root.json");
        std::fs::write(&root_path, root.to_json_pretty().expect("json")).expect("write root");
        Trust {
            root_path,
            channel_key_path: dir.join("keys/channel.key"),
            release_key_path: dir.join("keys/release.key"),
            dir: dir.to_owned(),
            root_key,
            release_key,
            channel_key,
            root,
        }
    }

    /// Signs a release of `version` for `(platform, file)` artifacts; writes `release-<v>.json`.
    pub fn sign_release(
        &self,
        version: &str,
        minimum: &str,
        artifacts: &[(&str, &Path)],
    ) -> (Signed<Release>, PathBuf) {
        let artifacts = artifacts
            .iter()
            .map(|(platform, path)| {
                let (sha256, size) = manifests::hash_file(path).expect("hash artifact");
                Artifact {
                    platform: (*platform).to_owned(),
                    url: format!("/api/worker-updates/artifacts/{sha256}"),
                    sha256,
                    size,
                    mirrors: Vec::new(),
                    deltas: Vec::new(),
                    extra: BTreeMap::new(),
                }
            })
            .collect();
        let release = Release {
            doc_type: DocType::Release,
            product: manifests::PRODUCT.to_owned(),
            version: version.parse().expect("version"),
            released_at: Timestamp::now(),
            minimum_version: minimum.parse().expect("version"),
            artifacts,
            notes: format!("test release {version}"),
            extra: BTreeMap::new(),
        };
        let doc = Signed::sign(release, &[&self.release_key]).expect("sign release");
        let path = self.dir.join(format!("release-{version}.json"));
        std::fs::write(&path, doc.to_json_pretty().expect("json")).expect("write release");
        (doc, path)
    }

    /// Signs a release whose single artifact (`file`, for this platform) is fetched from `url`
    /// instead of the update server (a mirror).
    pub fn sign_release_at(&self, version: &str, file: &Path, url: &str) -> Signed<Release> {
        let (mut doc, _) = self.sign_release(version, "0.0.0", &[(PLATFORM, file)]);
        doc.signed.artifacts[0].url = url.to_owned();
        Signed::sign(doc.signed, &[&self.release_key]).expect("sign release")
    }

    /// Signs a rollback directive from `from` to `to`, valid for a day.
    pub fn sign_rollback(&self, from: &[&str], to: &str) -> Signed<Rollback> {
        let now = Timestamp::now();
        let directive = Rollback {
            doc_type: DocType::Rollback,
            product: manifests::PRODUCT.to_owned(),
            from: from
                .iter()
                .map(|v| v.parse::<Version>().expect("version"))
                .collect(),
            to: to.parse().expect("version"),
            issued_at: now,
            expires: now.plus_secs(86_400),
            reason: "test rollback".to_owned(),
            extra: BTreeMap::new(),
        };
        Signed::sign(directive, &[&self.release_key]).expect("sign rollback")
    }

    /// The trusted root, verified.
    pub fn trusted_root(&self) -> Root {
        self.root
            .verify_self(Timestamp::now(), manifests::ExpirationEnforcement::Safe)
            .expect("root verifies")
    }
}

/// A running `update-server`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Admin token.
    pub admin_token: String,
    /// Worker token.
    pub worker_token: String,
    /// Data directory (kept across restarts).
    pub data_dir: PathBuf,
    /// The CA bundle the test's API clients trust (a server with `--tls-cert`).
    pub ca_bundle: Option<PathBuf>,
    args: Vec<String>,
    log: PathBuf,
}

/// A fresh random-looking token (hex of a new key id: 64 characters).
pub fn token() -> String {
    PrivateKey::generate("token").expect("random").keyid()
}

impl Server {
    /// Starts a server for `trust` in `dir` with extra command-line arguments (`--listen ADDR`
    /// among them replaces the default, a free loopback port).
    pub fn start(dir: &Path, trust: &Trust, extra: &[&str]) -> Self {
        Self::start_with_ca(dir, trust, extra, None)
    }

    /// [`Server::start`] for a server whose certificate (`--tls-cert` in `extra`) the CA of
    /// `ca_bundle` issued: its API clients trust that CA.
    pub fn start_with_ca(
        dir: &Path,
        trust: &Trust,
        extra: &[&str],
        ca_bundle: Option<&Path>,
    ) -> Self {
        Self::start_in_mode(dir, trust, extra, ca_bundle, true)
    }

    /// [`Server::start_with_ca`] with the shared worker token (`--worker-token-file`,
    /// `shared`) or without it (enrolled workers only; `worker_token` is then a token the
    /// server does not know).
    pub fn start_in_mode(
        dir: &Path,
        trust: &Trust,
        extra: &[&str],
        ca_bundle: Option<&Path>,
        shared: bool,
    ) -> Self {
        let admin_token = token();
        let worker_token = token();
        std::fs::write(dir.join("admin.tokens"), format!("ops={admin_token}\n")).expect("tokens");
        std::fs::write(dir.join("worker.tokens"), format!("fleet={worker_token}\n"))
            .expect("tokens");
        let data_dir = dir.join("server-data");
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir.to_string_lossy(),
            "--root",
            &trust.root_path.to_string_lossy(),
            "--channel-key",
            &trust.channel_key_path.to_string_lossy(),
            "--admin-token-file",
            &dir.join("admin.tokens").to_string_lossy(),
            "--worker-token-file",
            &dir.join("worker.tokens").to_string_lossy(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        if !shared {
            args.truncate(args.len() - 2);
        }
        // A default flag `extra` sets again (e.g. `--listen ADDR`, or `--data-dir` for a second
        // replica on a shared data directory) is dropped: clap refuses a flag given twice.
        for flag in [
            "--listen",
            "--data-dir",
            "--admin-token-file",
            "--worker-token-file",
        ] {
            if extra.contains(&flag) {
                if let Some(at) = args.iter().position(|arg| arg == flag) {
                    args.drain(at..=at + 1);
                }
            }
        }
        let data_dir = extra
            .iter()
            .position(|arg| *arg == "--data-dir")
            .and_then(|at| extra.get(at + 1))
            .map_or(data_dir, PathBuf::from);
        args.extend(extra.iter().map(ToString::to_string));
        let log = dir.join("update-server.log");
        let (child, url) = spawn(&args, &log);
        Server {
            child,
            url,
            admin_token,
            worker_token,
            data_dir,
            ca_bundle: ca_bundle.map(Path::to_owned),
            args,
            log,
        }
    }

    /// `kill -9` the server and start it again on the same data directory (new port).
    pub fn crash_and_restart(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        let (child, url) = spawn(&self.args, &self.log);
        self.child = child;
        self.url = url;
    }

    /// The server's arguments with each `(flag, value)` set: replaced when the flag is there,
    /// added otherwise (an empty value adds a bare flag such as `--allow-weaker`).
    fn args_with(&self, set: &[(&str, &str)]) -> Vec<String> {
        let mut args = self.args.clone();
        for (flag, value) in set {
            match args.iter().position(|arg| arg == flag) {
                Some(at) if !value.is_empty() => args[at + 1] = (*value).to_owned(),
                Some(_) => {}
                None => {
                    args.push((*flag).to_owned());
                    if !value.is_empty() {
                        args.push((*value).to_owned());
                    }
                }
            }
        }
        args
    }

    /// `kill -9` the server and start it again on the same data directory and the same address
    /// (agents and proxies keep reaching it) with the flags of [`Server::args_with`] (e.g.
    /// `--root` and `--channel-key` for a channel-key rotation, as DEPLOYMENT.md says).
    pub fn restart_with(&mut self, set: &[(&str, &str)]) {
        let address = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest)
            .to_owned();
        let mut set = set.to_vec();
        set.push(("--listen", &address));
        self.args = self.args_with(&set);
        self.crash_and_restart();
    }

    /// Starts a second server on the same data directory with the flags of
    /// [`Server::args_with`] and returns its stderr once it refused to start; panics when it
    /// started (or ran for 20 s).
    pub fn refused_start(&self, set: &[(&str, &str)]) -> String {
        let all = self.args_with(set);
        let mut child = Command::new(bin("update-server"))
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run update-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("reap");
                panic!(
                    "update-server started with {set:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = child.wait_with_output().expect("reap");
        assert!(
            !output.status.success(),
            "update-server exited 0 with {set:?}"
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Stops the server (`kill -9`): an outage, until [`Server::start_again`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on its data directory. It answers on the same URL only
    /// when it was started with a fixed `--listen` address (an outage the agents ride out).
    pub fn start_again(&mut self) {
        let (child, url) = spawn(&self.args, &self.log);
        self.child = child;
        self.url = url;
    }

    /// Starts a stopped server again with the flags of [`Server::args_with`] (e.g.
    /// `--database-url` after `update-server migrate`), on a new port.
    pub fn start_again_with(&mut self, set: &[(&str, &str)]) {
        self.args = self.args_with(set);
        self.start_again();
    }

    /// The server's log so far (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An API client with the admin token.
    pub fn admin(&self) -> Api {
        Api::trusting(
            &self.url,
            Some(&self.admin_token),
            self.ca_bundle.as_deref(),
        )
    }

    /// An API client with the worker token.
    pub fn worker(&self) -> Api {
        Api::trusting(
            &self.url,
            Some(&self.worker_token),
            self.ca_bundle.as_deref(),
        )
    }

    /// The update reports in the audit trail, one per line (`<outcome> <reason> <from>-><to> in
    /// N ms (correlation <id>)`).
    pub fn reports(&self) -> String {
        let audit = self.admin().get("/api/admin/audit?limit=500").json();
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["kind"] == "report")
            .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Publishes a release and uploads its artifacts.
    pub fn publish(&self, release: &Signed<Release>, files: &[&Path]) {
        let admin = self.admin();
        let response = admin.post_bytes(
            "/api/admin/releases",
            release.to_json_pretty().expect("json"),
        );
        assert!(response.status < 300, "publish: {response:?}");
        for file in files {
            let (sha, _) = manifests::hash_file(file).expect("hash");
            let response = admin.put_bytes(
                &format!("/api/admin/artifacts/{sha}"),
                std::fs::read(file).expect("read"),
            );
            assert!(response.status < 300, "upload: {response:?}");
        }
    }

    /// Promotes `version` on `channel` at `percent` (overriding the soak gate on stable).
    pub fn promote(&self, channel: &str, version: &str, percent: u8) -> serde_json::Value {
        let response = self.admin().post_json(
            &format!("/api/admin/channels/{channel}/promote"),
            &serde_json::json!({"version": version, "percent": percent, "override": channel == "stable", "reason": "test"}),
        );
        assert_eq!(response.status, 200, "promote: {response:?}");
        response.json()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], log: &Path) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(bin("update-server"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start update-server");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default();
    let Some(url) = line.trim().strip_prefix("update-server listening on ") else {
        let _ = child.kill();
        panic!(
            "update-server did not start: {line:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    (child, url.to_owned())
}

/// A minimal blocking HTTP client for the APIs.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl Api {
    /// A client for `base` sending `token`.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self::trusting(base, token, None)
    }

    /// [`Api::new`] also trusting the CA certificates of the PEM file `ca_bundle`.
    pub fn trusting(base: &str, token: Option<&str>, ca_bundle: Option<&Path>) -> Self {
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120));
        if let Some(path) = ca_bundle {
            let pem = std::fs::read(path).expect("read the CA bundle");
            builder = builder
                .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem).expect("CA bundle"));
        }
        Api {
            client: builder.build().expect("client"),
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Api {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Sends a request built by `build`.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = build(request)
            .send()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = response.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, |r| r)
    }

    /// POST JSON.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        let body = body.clone();
        self.send(reqwest::Method::POST, path, move |r| r.json(&body))
    }

    /// POST raw bytes.
    pub fn post_bytes(&self, path: &str, body: Vec<u8>) -> Reply {
        self.send(reqwest::Method::POST, path, move |r| r.body(body))
    }

    /// PUT raw bytes.
    pub fn put_bytes(&self, path: &str, body: Vec<u8>) -> Reply {
        self.send(reqwest::Method::PUT, path, move |r| r.body(body))
    }

    /// `/api/worker-updates/latest` for a worker.
    pub fn latest(&self, channel: &str, version: &str, worker_id: &str) -> Reply {
        self.get(&format!(
            "/api/worker-updates/latest?channel={channel}&platform={PLATFORM}&current_version={version}&worker_id={worker_id}"
        ))
    }
}

/// A free loopback port (bound then released; the agent binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `worker-agent run` (its supervisor; the worker is its child).
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// The install path (a copy of the binary under test).
    pub install_path: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// `127.0.0.1:PORT` of `/metrics` and `/healthz`.
    pub metrics_addr: String,
    /// The supervisor's stderr log.
    pub log_path: PathBuf,
    args: Vec<String>,
    /// Whether the supervisor leads its own process group (as in a terminal session or under a
    /// service manager), so that a test can signal the whole group as Ctrl-C does.
    own_group: bool,
}

impl Agent {
    /// Installs `binary` as `dir/install/worker-agent` and runs it against `server` with extra
    /// environment variables.
    pub fn start_with_env(
        dir: &Path,
        server: &Server,
        trust: &Trust,
        binary: &Path,
        channel: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_at(
            dir,
            &server.url,
            &server.worker_token,
            trust,
            binary,
            channel,
            extra,
            env,
            false,
        )
    }

    /// [`Agent::start_with_env`] against any update-server URL (e.g. a proxy in front of the
    /// server), with the supervisor leading its own process group when `own_group` (see
    /// [`Agent::signal_process_group`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start_at(
        dir: &Path,
        server_url: &str,
        worker_token: &str,
        trust: &Trust,
        binary: &Path,
        channel: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        own_group: bool,
    ) -> Self {
        let install_dir = dir.join("install");
        std::fs::create_dir_all(&install_dir).expect("install dir");
        let install_path = install_dir.join("worker-agent");
        std::fs::copy(binary, &install_path).expect("install the agent");
        std::fs::write(dir.join("worker.token"), worker_token).expect("token");
        let state_dir = dir.join("state");
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        // No token (empty): the agent enrols (`WORKER_ENROLL_TOKEN_FILE` in `env`).
        let token_args: &[&str] = if worker_token.is_empty() {
            &[]
        } else {
            &["--token", worker_token]
        };
        let mut args: Vec<String> = ["run", "--update-server", server_url, "--channel", channel]
            .iter()
            .chain(token_args)
            .chain(&[
                "--root",
                &trust.root_path.to_string_lossy(),
                "--state-dir",
                &state_dir.to_string_lossy(),
                "--metrics-listen",
                &metrics_addr,
            ])
            .map(ToString::to_string)
            .collect();
        // Short probation by default; `extra` may set its own.
        for (flag, value) in [("--probation-secs", "2"), ("--ready-timeout-secs", "8")] {
            if !extra.contains(&flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        args.extend(extra.iter().map(ToString::to_string));
        let log_path = dir.join("agent.log");
        let child = spawn_agent(&install_path, &args, &log_path, env, own_group);
        Agent {
            child,
            install_path,
            state_dir,
            metrics_addr,
            log_path,
            args,
            own_group,
        }
    }

    /// Starts it again (same install, same state), with extra environment.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.child = spawn_agent(
            &self.install_path,
            &self.args,
            &self.log_path,
            env,
            self.own_group,
        );
    }

    /// Sends `signal` (a `kill -s` name: `INT`, `TERM`) to the supervisor alone.
    pub fn signal_supervisor(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} the supervisor");
    }

    /// Sends `signal` to the supervisor's process group (the supervisor, its worker and what
    /// they started), as a terminal's Ctrl-C does; the agent must have been launched in its own
    /// group.
    pub fn signal_process_group(&self, signal: &str) {
        assert!(self.own_group, "this agent shares the test's process group");
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args(["-s", signal, "--", &group])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} -- {group}");
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.child.id()
    }

    /// The supervisor's exit status, if it exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The command-line arguments it runs with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// `kill -9` the supervisor and its worker.
    pub fn kill9_all(&mut self) {
        let worker = self.ready().and_then(|r| r["pid"].as_u64());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = worker {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // Any worker started from a staged file, too.
        let _ = Command::new("pkill")
            .args(["-9", "-f", &self.state_dir.to_string_lossy()])
            .status();
    }

    /// `ready.json` of the current worker.
    pub fn ready(&self) -> Option<serde_json::Value> {
        std::fs::read(self.state_dir.join("ready.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The versions quarantined in the stored trust state (`trust.json`).
    pub fn quarantined(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.state_dir.join("trust.json")).expect("trust.json");
        let trust: serde_json::Value = serde_json::from_slice(&bytes).expect("trust.json is JSON");
        trust["quarantined"].clone()
    }

    /// `GET /healthz` of the worker (None while it is down).
    pub fn health(&self) -> Option<serde_json::Value> {
        let reply = reqwest::blocking::Client::new()
            .get(format!("http://{}/healthz", self.metrics_addr))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        reply.json().ok()
    }

    /// `GET /metrics` of the worker.
    pub fn metrics(&self) -> String {
        reqwest::blocking::Client::new()
            .get(format!("http://{}/metrics", self.metrics_addr))
            .timeout(Duration::from_secs(2))
            .send()
            .and_then(reqwest::blocking::Response::text)
            .unwrap_or_default()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `--version` of the binary at the install path.
    pub fn installed_version(&self) -> String {
        let output = Command::new(&self.install_path)
            .arg("--version")
            .output()
            .expect("run --version");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Whether the install path holds `version` (per its `--version`).
    pub fn installed_is(&self, version: &str) -> bool {
        self.installed_version()
            .starts_with(&format!("worker-agent {version} "))
    }

    /// Waits until `check` holds (polling every 200 ms), or panics with the log after `limit`.
    #[track_caller]
    pub fn wait_until(&self, what: &str, limit: Duration, mut check: impl FnMut(&Agent) -> bool) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out after {limit:?} waiting for: {what}\n--- agent log ---\n{}",
            self.log()
        );
    }

    /// Whether a worker of `version` is ready (announced itself) and its `/healthz` answers.
    pub fn serves_version(&self, version: &str) -> bool {
        self.ready().is_some_and(|r| r["version"] == version)
            && self.health().is_some_and(|h| h["version"] == version)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .args(["-9", "-f", &self.state_dir.to_string_lossy()])
            .status();
    }
}

fn spawn_agent(
    program: &Path,
    args: &[String],
    log: &Path,
    env: &[(&str, &str)],
    own_group: bool,
) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("agent log");
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("WORKER_AGENT_ROLE")
        .env_remove("WORKER_AGENT_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (key, value) in env {
        command.env(key, value);
    }
    if own_group {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    // A binary copied a moment ago can be "busy" (ETXTBSY) while another test thread's fork
    // still holds the copy's write descriptor between fork and exec: retry briefly.
    let mut tries = 0;
    loop {
        match command.spawn() {
            Ok(child) => return child,
            Err(error) if error.raw_os_error() == Some(26) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("start worker-agent: {error}"),
        }
    }
}

/// The value of one sample (`name{labels}`, exactly) in a Prometheus text exposition.
pub fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| {
            line.starts_with(name_and_labels) && line[name_and_labels.len()..].starts_with(' ')
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The path of a system tool the tests drive for real (e.g. `promtool`), found on `PATH`.
/// Panics (the test fails, it is never skipped) when it is missing, naming the Debian package
/// `scripts/test.sh` installs for it.
#[track_caller]
pub fn system_tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| {
                m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
        .unwrap_or_else(|| {
            panic!("{program} not found on PATH: install the Debian package {package} (scripts/test.sh does)")
        })
}
