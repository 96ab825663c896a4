//! Helpers for the end-to-end tests: locate (and build when needed) the real binaries, and run
//! them in a temporary directory.
//!
//! The binaries are built by cargo itself, once per test process, so a `cargo test` after an
//! edit never runs a stale binary. Agents at other versions are built from this same source with
//! `WORKER_AGENT_VERSION` into `target/e2e-agents/<version>/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The cargo target directory this test binary was built in.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return workspace_root().join(dir);
    }
    workspace_root().join("target")
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(workspace_root());
    command
}

fn run_cargo_build(args: &[&str], envs: &[(&str, &str)]) {
    let mut command = cargo();
    command.arg("build").arg("--quiet").args(args);
    // An unset and an empty variable are different to cargo's rebuild tracking: keep it unset.
    command.env_remove("WORKER_AGENT_VERSION");
    for (key, value) in envs {
        command.env(key, value);
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Path of a workspace binary (`worker-release`, `update-server`, `worker-agent`) at the
/// workspace's own version, built on first use.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| run_cargo_build(&["--workspace", "--bins"], &[]));
    let path = target_dir().join("debug").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Path of a `worker-agent` built from this source but reporting `version`.
///
/// All versions share one target directory (`target/e2e-agents/build`), so only the agent crate
/// is recompiled per version; each result is copied to `target/e2e-agents/<version>/`.
pub fn agent_at_version(version: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(version) {
        return path.clone();
    }
    let build_dir = target_dir().join("e2e-agents").join("build");
    let build_text = build_dir.to_string_lossy().into_owned();
    run_cargo_build(
        &[
            "-p",
            "worker-agent",
            "--bin",
            "worker-agent",
            "--target-dir",
            &build_text,
        ],
        &[("WORKER_AGENT_VERSION", version)],
    );
    let dir = target_dir().join("e2e-agents").join(version);
    std::fs::create_dir_all(&dir).expect("agent dir");
    let path = dir.join("worker-agent");
    let staging = dir.join(".worker-agent.copy");
    std::fs::copy(build_dir.join("debug").join("worker-agent"), &staging).expect("copy agent");
    std::fs::rename(&staging, &path).expect("place agent");
    built.insert(version.to_owned(), path.clone());
    path
}

/// A temporary working directory with helpers to run binaries in it.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh empty directory.
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path()/relative`.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file (relative to the sandbox).
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Runs `program` with `args` in the sandbox (standard input: none, never a terminal).
    pub fn run(&self, program: &Path, args: &[&str]) -> Run {
        self.run_with_env(program, args, &[])
    }

    /// Runs `program` with `args` and the extra environment `env` in the sandbox.
    pub fn run_with_env(&self, program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
        let output = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .current_dir(self.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        Run {
            what: format!("{} {}", program.display(), args.join(" ")),
            output,
        }
    }

    /// Runs `worker-release` with `args` in the sandbox.
    pub fn release_cli(&self, args: &[&str]) -> Run {
        self.run(&bin("worker-release"), args)
    }

    /// Runs `worker-release` with `args` and the extra environment `env` in the sandbox.
    pub fn release_cli_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Run {
        self.run_with_env(&bin("worker-release"), args, env)
    }

    /// Writes a secret file (mode 0600, like a key or a token file).
    pub fn write_secret(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(relative, contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        path
    }
}

/// The outcome of one command.
#[derive(Debug)]
pub struct Run {
    what: String,
    /// Exit status and captured output.
    pub output: Output,
}

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn success(&self) -> String {
        assert!(
            self.output.status.success(),
            "{} failed ({}):\nstdout: {}\nstderr: {}",
            self.what,
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Asserts a non-zero exit and returns stderr.
    #[track_caller]
    pub fn failure(&self) -> String {
        assert!(
            !self.output.status.success(),
            "{} unexpectedly succeeded:\nstdout: {}",
            self.what,
            self.stdout()
        );
        self.stderr()
    }
}

pub mod fleet;
pub mod manager;
pub mod mirror;
pub mod postgres;
pub mod world;
