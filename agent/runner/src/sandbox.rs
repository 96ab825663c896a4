//! Tool processes (ffmpeg, ffprobe, Whisper's Python) confined with Landlock (issue 14, item 6):
//! they run on untrusted media, so they get write access beneath their task's workspace (and
//! `/dev/null`, `/dev/shm` and the GPU devices) and nowhere else: not the install directory,
//! not the state directory, not another task's workspace. They get no TCP either (ffmpeg's
//! demuxers can follow URLs named inside a media file; the download already happened), and not
//! the runner's or the update server's token in their environment.
//!
//! How: [`ProcessRunner`](crate::process::ProcessRunner) starts `/proc/self/exe tool-sandbox
//! --write <workspace> -- <tool> <args>`: the agent's own binary, re-executed (so it works even
//! after an update replaced the install path), restricts itself with the `landlock` crate while
//! it is still single-threaded and then `exec`s the tool, which inherits the restriction. (Not
//! a `pre_exec` hook: the workspace forbids `unsafe`, and allocating between `fork` and `exec`
//! in the multi-threaded worker is not async-signal-safe.)
//!
//! Where the kernel lacks Landlock the tool runs unconfined and says so on its standard error
//! (the task's `error_script.log`); the worker also logs the kernel's support once at start
//! ([`ToolSandbox::probe`]).

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;
use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetError, RulesetStatus, ABI,
};

/// The hidden subcommand of `worker-agent` that confines a tool and `exec`s it.
pub const SUBCOMMAND: &str = "tool-sandbox";

/// The Landlock ABI whose write rights are asked for (best effort: what the kernel has).
const WRITE_ABI: ABI = ABI::V5;
/// The Landlock ABI whose TCP rights are asked for.
const NET_ABI: ABI = ABI::V4;

/// `worker-agent tool-sandbox [--write DIR]... -- PROGRAM [ARGS]...`.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// A directory the tool may write beneath (repeatable); everything else is read-only.
    #[arg(long = "write")]
    pub write: Vec<PathBuf>,
    /// Print what this kernel enforces and exit.
    #[arg(long)]
    pub probe: bool,
    /// The tool and its arguments.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// Device files and directories a tool may open for writing besides its workspace: the null
/// devices, POSIX shared memory (Python's multiprocessing semaphores), and GPUs (`/dev/dri`,
/// `/dev/nvidia*`, opened read-write by CUDA and NVENC). Not `/dev` as a whole (disks).
fn writable_devices() -> Vec<PathBuf> {
    let mut devices: Vec<PathBuf> = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/shm",
        "/dev/dri",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Ok(entries) = std::fs::read_dir("/dev") {
        devices.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("nvidia"))
                .map(|e| e.path()),
        );
    }
    devices
}

/// What the restriction achieved.
fn restrict(write: &[PathBuf]) -> Result<(RulesetStatus, String), RulesetError> {
    let devices = writable_devices();
    let writable: Vec<&Path> = write
        .iter()
        .chain(devices.iter())
        .map(PathBuf::as_path)
        .collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_write(WRITE_ABI))?
        .handle_access(AccessNet::from_all(NET_ABI))?
        .create()?
        .add_rules(path_beneath_rules(
            &writable,
            AccessFs::from_write(WRITE_ABI),
        ))?
        .restrict_self()?;
    let detail = format!("{:?}", status.landlock);
    Ok((status.ruleset, detail))
}

/// Runs the subcommand: restricts this process, then `exec`s the tool (returns only on failure,
/// with the exit code to use).
pub fn main(args: &SandboxArgs) -> i32 {
    let restricted = restrict(&args.write);
    if args.probe {
        match &restricted {
            Ok((RulesetStatus::FullyEnforced, detail)) => println!("enforced {detail}"),
            Ok((RulesetStatus::PartiallyEnforced, detail)) => println!("partial {detail}"),
            Ok((RulesetStatus::NotEnforced, detail)) => println!("unavailable {detail}"),
            Err(error) => println!("error {error}"),
        }
        return 0;
    }
    let Some((program, rest)) = args.command.split_first() else {
        eprintln!("worker-agent {SUBCOMMAND}: no command to run");
        return 2;
    };
    match restricted {
        Ok((RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced, _)) => {}
        Ok((RulesetStatus::NotEnforced, detail)) => eprintln!(
            "worker-agent {SUBCOMMAND}: Landlock is not available on this kernel ({detail}): \
             {} runs WITHOUT write confinement (fallback)",
            program.to_string_lossy()
        ),
        Err(error) => {
            // Fail closed: a rule that cannot be built is a bug or a missing workspace.
            eprintln!("worker-agent {SUBCOMMAND}: cannot confine the tool: {error}");
            return 126;
        }
    }
    let error = std::process::Command::new(program).args(rest).exec();
    eprintln!(
        "worker-agent {SUBCOMMAND}: cannot run {}: {error}",
        program.to_string_lossy()
    );
    127
}

/// How the runner starts its tools confined: through `launcher tool-sandbox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSandbox {
    launcher: PathBuf,
}

/// What the kernel enforces for tool processes, as the worker logs it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Landlock confines the tools.
    Enforced(String),
    /// Landlock confines the tools, with fewer rights handled than asked for (older kernel).
    Partial(String),
    /// No Landlock: tools run unconfined (the fallback).
    Unavailable(String),
}

impl ToolSandbox {
    /// The running agent binary as the launcher (`/proc/self/exe`, valid even when the install
    /// path was replaced since the agent started).
    pub fn current_exe() -> Self {
        ToolSandbox {
            launcher: PathBuf::from("/proc/self/exe"),
        }
    }

    /// A launcher at `path` (a `worker-agent` binary).
    pub fn with_launcher(path: &Path) -> Self {
        ToolSandbox {
            launcher: path.to_owned(),
        }
    }

    /// The program and arguments that run `program args` confined to `workspace`.
    pub fn wrap(
        &self,
        workspace: &Path,
        program: &OsStr,
        args: &[impl AsRef<OsStr>],
    ) -> (PathBuf, Vec<OsString>) {
        let mut wrapped: Vec<OsString> = vec![
            SUBCOMMAND.into(),
            "--write".into(),
            workspace.as_os_str().to_owned(),
            "--".into(),
            program.to_owned(),
        ];
        wrapped.extend(args.iter().map(|a| a.as_ref().to_owned()));
        (self.launcher.clone(), wrapped)
    }

    /// What this kernel enforces (runs the launcher's `--probe`).
    pub async fn probe(&self) -> Support {
        let output = tokio::process::Command::new(&self.launcher)
            .args([SUBCOMMAND, "--probe"])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        let text = match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            Err(error) => format!("error cannot run {}: {error}", self.launcher.display()),
        };
        let (word, detail) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match word {
            "enforced" => Support::Enforced(detail.to_owned()),
            "partial" => Support::Partial(detail.to_owned()),
            _ => Support::Unavailable(text.clone()),
        }
    }

    /// Probes and logs the support once (the fallback is a warning).
    pub async fn log_support(&self) -> Support {
        let support = self.probe().await;
        match &support {
            Support::Enforced(detail) => {
                tracing::info!(landlock = %detail, "tool sandbox: Landlock enforced; ffmpeg and Whisper may write only their task workspace")
            }
            Support::Partial(detail) => {
                tracing::warn!(landlock = %detail, "tool sandbox: Landlock partially enforced by this kernel; ffmpeg and Whisper may write only their task workspace, some rights are not handled")
            }
            Support::Unavailable(detail) => {
                tracing::warn!(landlock = %detail, reason = "landlock_unavailable", "tool sandbox: Landlock is not available on this kernel; ffmpeg and Whisper run WITHOUT write confinement (fallback)")
            }
        }
        support
    }
}
