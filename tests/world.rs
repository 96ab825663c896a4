//! The one test world of the e2e modules: a sandbox, a trust set, a running `update-server` and,
//! when asked for, the `FakeManager` ESUP runners register with. What the modules differ in is
//! chosen with [`WorldBuilder`] (server flags, the Manager) and [`AgentLauncher`] (the agent's
//! version, directory, flags, environment, the URL it talks to).

use std::path::{Path, PathBuf};
use std::time::Duration;

use manifests::{Release, Signed};

use crate::fleet::{Agent, Server, Trust, PLATFORM};
use crate::manager::{runner_env, FakeManager, RUNNER_TOKEN};
use crate::{agent_at_version, Sandbox};

/// The channel every e2e agent follows unless a test asks for another.
const CHANNEL: &str = "stable";

/// A sandbox with a trust set, a running server and optionally a Manager.
#[derive(Debug)]
pub struct World {
    /// The temporary directory everything lives in.
    pub sandbox: Sandbox,
    /// Keys and the signed root (in the sandbox).
    pub trust: Trust,
    /// The running update server (its data in the sandbox).
    pub server: Server,
    /// `sandbox/media`: what the Manager serves as task sources (created with the Manager).
    pub media: PathBuf,
    /// `sandbox/storage`: the runners' `STORAGE_DIR`.
    pub storage: PathBuf,
    manager: Option<FakeManager>,
}

/// What a [`World`] starts with.
#[derive(Debug, Default)]
pub struct WorldBuilder {
    server_args: Vec<String>,
    server_ca: Option<PathBuf>,
    manager: bool,
    enrolment_only: bool,
}

impl WorldBuilder {
    /// Extra `update-server serve` flags (e.g. `--statement-ttl 6s`).
    pub fn server_args(mut self, args: &[&str]) -> Self {
        self.server_args
            .extend(args.iter().map(ToString::to_string));
        self
    }

    /// The CA that issued the server's certificate (`--tls-cert` in the server arguments):
    /// the test's API clients trust it.
    pub fn server_ca(mut self, ca_bundle: &Path) -> Self {
        self.server_ca = Some(ca_bundle.to_owned());
        self
    }

    /// Runs the server without the shared worker token (`--worker-token-file`): only enrolled
    /// workers are served.
    pub fn enrolment_only(mut self) -> Self {
        self.enrolment_only = true;
        self
    }

    /// Also runs a `FakeManager` (token [`RUNNER_TOKEN`], serving `sandbox/media`).
    pub fn with_manager(mut self) -> Self {
        self.manager = true;
        self
    }

    /// Creates the sandbox and trust set and starts the processes.
    pub fn start(self) -> World {
        let sandbox = Sandbox::new();
        let trust = Trust::new(sandbox.path());
        let args: Vec<&str> = self.server_args.iter().map(String::as_str).collect();
        let server = Server::start_in_mode(
            sandbox.path(),
            &trust,
            &args,
            self.server_ca.as_deref(),
            !self.enrolment_only,
        );
        let media = sandbox.join("media");
        let manager = self.manager.then(|| {
            std::fs::create_dir_all(&media).expect("media dir");
            FakeManager::start(RUNNER_TOKEN, &media)
        });
        World {
            storage: sandbox.join("storage"),
            media,
            sandbox,
            trust,
            server,
            manager,
        }
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A world with a plain server and no Manager.
    pub fn new() -> Self {
        Self::builder().start()
    }

    /// A builder for a world that differs from [`World::new`].
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// The Manager; panics when the world was built without [`WorldBuilder::with_manager`].
    #[track_caller]
    pub fn manager(&self) -> &FakeManager {
        self.manager
            .as_ref()
            .expect("this world runs no FakeManager: build it with `with_manager()`")
    }

    /// Signs `version` (with the trust's release key) for `artifacts` and publishes it.
    pub fn publish(&self, version: &str, artifacts: &[(&str, &Path)]) -> Signed<Release> {
        let (release, _) = self.trust.sign_release(version, "0.0.0", artifacts);
        let files: Vec<&Path> = artifacts.iter().map(|(_, file)| *file).collect();
        self.server.publish(&release, &files);
        release
    }

    /// Writes `contents` to the sandbox-relative `artifact`, then signs and publishes `version`
    /// with it as this platform's artifact.
    pub fn publish_written(
        &self,
        version: &str,
        artifact: &str,
        contents: impl AsRef<[u8]>,
    ) -> Signed<Release> {
        let file = self.sandbox.write(artifact, contents);
        self.publish(version, &[(PLATFORM, &file)])
    }

    /// Publishes `artifact` as `version` for this platform and promotes it on stable at
    /// `percent`.
    pub fn roll_out(&self, version: &str, artifact: &Path, percent: u8) -> Signed<Release> {
        let release = self.publish(version, &[(PLATFORM, artifact)]);
        self.server.promote(CHANNEL, version, percent);
        release
    }

    /// Signs `version` with `file` fetched from `url` (a mirror), publishes it and promotes it
    /// on stable at 100 %.
    pub fn roll_out_from(&self, version: &str, file: &Path, url: &str) {
        let release = self.trust.sign_release_at(version, file, url);
        self.server.publish(&release, &[file]);
        self.server.promote(CHANNEL, version, 100);
    }

    /// An agent at `version` to start (in the sandbox, on stable, against the server).
    pub fn agent(&self, version: &str) -> AgentLauncher<'_> {
        AgentLauncher {
            world: self,
            version: version.to_owned(),
            dir: self.sandbox.path().to_owned(),
            url: None,
            flags: Vec::new(),
            env: Vec::new(),
            own_group: false,
            join_token: None,
        }
    }

    /// An agent at `version` whose ESUP runners start at `base_port` and register with the
    /// Manager (the runner environment of [`runner_env`]; [`AgentLauncher::env`] overrides it).
    #[track_caller]
    pub fn runner(&self, version: &str, base_port: u16) -> AgentLauncher<'_> {
        let mut launcher = self.agent(version);
        launcher.env = runner_env(self.manager(), base_port, &self.storage);
        // A runner in probation is ready only once its self-check passed: up to 1 s of
        // registration wait, 5 s of `/runner/health` and a 20 s synthetic ffmpeg encode. The
        // harness's short default (8 s) is below that: on a loaded CI machine a slow encode
        // would roll a good release back as `not_ready`. 30 s covers the self-check's bounds.
        launcher.flags(&["--ready-timeout-secs", "30"])
    }

    /// Waits until `agent` reports `success <from>-><to>` (2 minutes at most), then until it
    /// serves `to` (30 s more).
    #[track_caller]
    pub fn wait_for_install(&self, agent: &Agent, from: &str, to: &str) {
        self.wait_for_report(
            agent,
            &format!("success {from}->{to}"),
            Duration::from_secs(120),
        );
        agent.wait_until(&format!("{to} serving"), Duration::from_secs(30), |a| {
            a.serves_version(to)
        });
    }

    /// Waits (at most `limit`) until the server's audit holds a report containing `needle`.
    #[track_caller]
    pub fn wait_for_report(&self, agent: &Agent, needle: &str, limit: Duration) {
        agent.wait_until(&format!("a report containing {needle:?}"), limit, |_| {
            self.server.reports().contains(needle)
        });
    }
}

/// How one agent of a [`World`] starts; [`AgentLauncher::start`] runs it.
#[derive(Debug)]
pub struct AgentLauncher<'w> {
    world: &'w World,
    version: String,
    dir: PathBuf,
    url: Option<String>,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    own_group: bool,
    join_token: Option<String>,
}

impl AgentLauncher<'_> {
    /// Enrols with `join_token` (written to `DIR/join.token`, mode 0600, as
    /// `WORKER_ENROLL_TOKEN_FILE`) instead of using the shared worker token.
    pub fn enrol_with(mut self, join_token: &str) -> Self {
        self.join_token = Some(join_token.to_owned());
        self
    }

    /// Installs it under `dir` instead of the sandbox (for a second agent).
    pub fn dir(mut self, dir: &Path) -> Self {
        dir.clone_into(&mut self.dir);
        self
    }

    /// Talks to `url` (e.g. a proxy in front of the server) instead of the server.
    pub fn via(mut self, url: &str) -> Self {
        self.url = Some(url.to_owned());
        self
    }

    /// Extra `worker-agent run` flags.
    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(ToString::to_string));
        self
    }

    /// Environment variables; each replaces one of the same name set before.
    pub fn env(mut self, env: &[(&str, &str)]) -> Self {
        for (key, value) in env {
            self.env.retain(|(k, _)| k != key);
            self.env.push(((*key).to_owned(), (*value).to_owned()));
        }
        self
    }

    /// Runs the supervisor as the leader of its own process group (as a terminal session or a
    /// service manager does), so [`Agent::signal_process_group`] reaches it and its worker.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// Starts the agent.
    pub fn start(mut self) -> Agent {
        let world = self.world;
        let mut token = world.server.worker_token.as_str();
        if let Some(join_token) = &self.join_token {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&self.dir).expect("agent dir");
            let file = self.dir.join("join.token");
            std::fs::write(&file, format!("{join_token}\n")).expect("join token");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod 600 join token");
            self.env.push((
                "WORKER_ENROLL_TOKEN_FILE".to_owned(),
                file.to_string_lossy().into_owned(),
            ));
            token = "";
        }
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Agent::start_at(
            &self.dir,
            self.url.as_deref().unwrap_or(&world.server.url),
            token,
            &world.trust,
            &agent_at_version(&self.version),
            CHANNEL,
            &flags,
            &env,
            self.own_group,
        )
    }
}
