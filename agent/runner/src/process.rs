//! External tools (ffmpeg, ffprobe, python) run in their own process group, so `/task/stop` and
//! the script timeout kill the whole tree (ffmpeg's helpers, python's workers), never just the
//! direct child; with a [`ToolSandbox`] set, each is confined to writing its task's workspace
//! (`crate::sandbox`), with `TMPDIR` in the workspace.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::sandbox::ToolSandbox;

/// How long a process group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Most stdout kept in memory per command (ffprobe JSON is far smaller); the logs get it all.
const STDOUT_LIMIT: usize = 32 * 1024 * 1024;
/// Most stderr kept in memory per command (the tail is what explains a failure).
const STDERR_TAIL: usize = 64 * 1024;

/// Environment variables a confined tool does not inherit (credentials of the agent).
const SECRET_VARIABLES: [&str; 2] = ["RUNNER_TOKEN", "WORKER_TOKEN"];

/// What a finished command printed.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    /// Standard output (up to 32 MiB).
    pub stdout: String,
    /// The last 64 KiB of standard error.
    pub stderr_tail: String,
}

/// Runs the commands of one task. Cloning shares the state (cancellation, live groups).
#[derive(Debug, Clone)]
pub struct ProcessRunner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cancel: CancellationToken,
    deadline: Instant,
    timeout_secs: u64,
    /// Process group ids of the commands running now.
    groups: Mutex<Vec<i32>>,
    /// Whether any command was started (`/task/stop` answers 409 before that).
    started_any: AtomicBool,
    /// Why the task was stopped, when not by `/task/stop` ([`ProcessRunner::abort`]).
    abort_reason: Mutex<Option<TaskError>>,
    info_log: PathBuf,
    error_log: PathBuf,
    /// The task's workspace (the only directory a confined tool may write).
    workspace: PathBuf,
    /// Confines every command when set ([`ProcessRunner::confine`]).
    sandbox: std::sync::OnceLock<ToolSandbox>,
}

impl ProcessRunner {
    /// A runner whose commands log under `workspace` (`info_script.log`, `error_script.log`),
    /// stop when `cancel` fires and time out `timeout` from now.
    pub fn new(workspace: &Path, timeout: Duration, cancel: CancellationToken) -> Self {
        ProcessRunner {
            inner: Arc::new(Inner {
                cancel,
                deadline: Instant::now() + timeout,
                timeout_secs: timeout.as_secs(),
                groups: Mutex::new(Vec::new()),
                started_any: AtomicBool::new(false),
                abort_reason: Mutex::new(None),
                info_log: workspace.join("info_script.log"),
                error_log: workspace.join("error_script.log"),
                workspace: workspace.to_owned(),
                sandbox: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Runs every command of this task through `sandbox` (write access to the workspace only).
    /// Set once, before the first command.
    pub fn confine(&self, sandbox: ToolSandbox) {
        let _ = self.inner.sandbox.set(sandbox);
    }

    /// The cancellation token (`/task/stop` fires it).
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Stops the task (as `/task/stop` does) with `error` as its reason, e.g. the disk bound.
    pub fn abort(&self, error: TaskError) {
        self.inner
            .abort_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(error);
        self.inner.cancel.cancel();
    }

    /// Why the task was stopped: the [`ProcessRunner::abort`] reason, else
    /// [`TaskError::Cancelled`] (`/task/stop`).
    pub fn stopped(&self) -> TaskError {
        self.inner
            .abort_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or(TaskError::Cancelled)
    }

    /// Fails with [`TaskError::Cancelled`] (or the abort reason) or [`TaskError::Timeout`] when
    /// the task must stop; pipelines call it between steps that run no command.
    pub fn check(&self) -> Result<(), TaskError> {
        if self.inner.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        if Instant::now() >= self.inner.deadline {
            return Err(TaskError::Timeout(self.inner.timeout_secs));
        }
        Ok(())
    }

    /// Time left before the script timeout.
    pub fn remaining(&self) -> Duration {
        self.inner
            .deadline
            .saturating_duration_since(Instant::now())
    }

    /// Whether a command has been started for this task.
    pub fn started_any(&self) -> bool {
        self.inner.started_any.load(Ordering::SeqCst)
    }

    /// Process groups running now.
    pub fn live_groups(&self) -> Vec<i32> {
        self.groups().clone()
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Vec<i32>> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `program args` to completion. `on_stdout_line` sees each line of standard output as
    /// it arrives (ffmpeg `-progress pipe:1`). A non-zero exit is [`TaskError::Failed`] with the
    /// end of standard error; stop and timeout kill the process group.
    pub async fn run(
        &self,
        label: &str,
        program: impl AsRef<OsStr>,
        args: &[impl AsRef<OsStr>],
        mut on_stdout_line: Option<&mut (dyn FnMut(&str) + Send)>,
    ) -> Result<CommandOutput, TaskError> {
        self.check()?;
        let program = program.as_ref();
        let printable = std::iter::once(program.to_string_lossy().into_owned())
            .chain(
                args.iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" ");
        self.log_line(&self.inner.info_log, &format!("[{label}] $ {printable}"))
            .await;
        let cannot_start = |e: std::io::Error| {
            TaskError::Failed(format!(
                "{label}: cannot start {}: {e}",
                program.to_string_lossy()
            ))
        };
        let mut command = match self.inner.sandbox.get() {
            None => {
                let mut command = tokio::process::Command::new(program);
                command.args(args);
                command
            }
            Some(sandbox) => {
                // Resolved here, so a missing tool reads as before ("cannot start").
                let resolved = resolve_program(program).map_err(cannot_start)?;
                let (launcher, wrapped) =
                    sandbox.wrap(&self.inner.workspace, resolved.as_os_str(), args);
                let tmp = self.inner.workspace.join("tmp");
                std::fs::create_dir_all(&tmp).map_err(cannot_start)?;
                let mut command = tokio::process::Command::new(launcher);
                command.args(wrapped).env("TMPDIR", tmp);
                // A tool on hostile media has no use for the credentials.
                for secret in SECRET_VARIABLES {
                    command.env_remove(secret);
                }
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(cannot_start)?;
        self.inner.started_any.store(true, Ordering::SeqCst);
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .unwrap_or_default();
        self.groups().push(pgid);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let info_log = self.inner.info_log.clone();
        let error_log = self.inner.error_log.clone();
        let stderr_task = tokio::spawn(async move { tail_to_log(stderr, &error_log).await });

        let mut out = String::new();
        let read_stdout = async {
            let Some(stdout) = stdout else { return };
            let mut log = open_append(&info_log).await;
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(log) = log.as_mut() {
                    let _ = log.write_all(line.as_bytes()).await;
                    let _ = log.write_all(b"\n").await;
                }
                if let Some(callback) = on_stdout_line.as_mut() {
                    callback(&line);
                }
                if out.len() + line.len() < STDOUT_LIMIT {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        };
        let ended = async {
            read_stdout.await;
            child.wait().await
        };
        let outcome = tokio::select! {
            status = ended => Ok(status),
            () = self.inner.cancel.cancelled() => Err(self.stopped()),
            () = tokio::time::sleep_until(self.inner.deadline) => Err(TaskError::Timeout(self.inner.timeout_secs)),
        };
        let result = match outcome {
            Ok(Ok(status)) => {
                let stderr_tail = stderr_task.await.unwrap_or_default();
                if status.success() {
                    Ok(CommandOutput {
                        stdout: out,
                        stderr_tail,
                    })
                } else {
                    Err(TaskError::Failed(format!(
                        "{label} failed ({status}): {}",
                        last_lines(&stderr_tail, 8)
                    )))
                }
            }
            Ok(Err(error)) => Err(TaskError::Failed(format!("{label}: waiting: {error}"))),
            Err(stop) => {
                terminate_group(pgid, &mut child).await;
                stderr_task.abort();
                Err(stop)
            }
        };
        self.groups().retain(|g| *g != pgid);
        if let Err(error) = &result {
            self.log_line(&self.inner.error_log, &format!("[{label}] {error}"))
                .await;
        }
        result
    }

    async fn log_line(&self, path: &Path, line: &str) {
        if let Some(mut file) = open_append(path).await {
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
    }
}

/// `program` as a path: as given when it names one (`/usr/bin/ffmpeg`, `./x`), else the first
/// executable file of that name on `PATH`.
fn resolve_program(program: &OsStr) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let as_path = Path::new(program);
    if as_path.components().count() > 1 || program.to_string_lossy().contains('/') {
        return if executable(as_path) {
            Ok(as_path.to_owned())
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

/// SIGTERM to the group, SIGKILL after [`TERM_GRACE`], and reap the direct child.
async fn terminate_group(pgid: i32, child: &mut tokio::process::Child) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        if pgid > 0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = child.kill().await;
    }
    // Helpers of the group that outlived the leader.
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

async fn open_append(path: &Path) -> Option<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .ok()
}

/// Copies a stream to the log file and returns its last [`STDERR_TAIL`] bytes.
async fn tail_to_log(stream: Option<impl AsRead>, log_path: &Path) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut log = open_append(log_path).await;
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(log) = log.as_mut() {
                    let _ = log.write_all(&buffer[..n]).await;
                }
                tail.extend_from_slice(&buffer[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    String::from_utf8_lossy(&tail).into_owned()
}

/// An async reader we can move into a task.
trait AsRead: AsyncRead + Unpin + Send + 'static {}
impl<T: AsyncRead + Unpin + Send + 'static> AsRead for T {}

/// The last `n` non-empty lines of `text`, joined by " | " (for one-line error messages).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Kills every live process group of `runner` (SIGTERM; the running `run` call escalates).
/// Returns whether any group was signalled.
pub fn signal_groups(runner: &ProcessRunner) -> bool {
    let mut any = false;
    for pgid in runner.live_groups() {
        if pgid > 0 && killpg(Pid::from_raw(pgid), Signal::SIGTERM).is_ok() {
            any = true;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cancel = CancellationToken::new();
        let runner = ProcessRunner::new(dir.path(), Duration::from_secs(60), cancel.clone());
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let task = tokio::spawn({
            let runner = runner.clone();
            async move { runner.run("sh", "sh", &["-c", &script], None).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pidfile.exists()
            || std::fs::read_to_string(&pidfile)
                .unwrap_or_default()
                .trim()
                .is_empty()
        {
            assert!(Instant::now() < deadline, "the script did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid")
            .trim()
            .parse()
            .expect("pid number");
        cancel.cancel();
        let result = task.await.expect("join");
        assert_eq!(result.expect_err("must fail"), TaskError::Cancelled);
        // The grandchild (same group) is gone too: signal 0 fails once it is reaped or a zombie
        // of init; give init a moment to reap.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let alive = nix::sys::signal::kill(Pid::from_raw(grandchild), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ");
            if !alive {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} survived the stop"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(runner.live_groups().is_empty());
    }

    #[tokio::test]
    async fn timeout_kills_and_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner =
            ProcessRunner::new(dir.path(), Duration::from_secs(1), CancellationToken::new());
        let result = runner.run("sleep", "sleep", &["30"], None).await;
        let error = result.expect_err("must fail");
        assert_eq!(error, TaskError::Timeout(1));
        assert_eq!(error.to_string(), "Script timeout after 1 seconds");
    }

    #[tokio::test]
    async fn failure_carries_the_end_of_stderr_and_logs_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runner = ProcessRunner::new(
            dir.path(),
            Duration::from_secs(30),
            CancellationToken::new(),
        );
        let mut seen = Vec::new();
        let mut callback = |line: &str| seen.push(line.to_owned());
        let result = runner
            .run(
                "demo",
                "sh",
                &[
                    "-c",
                    "echo progress=1; echo out; echo 'bad thing' >&2; exit 3",
                ],
                Some(&mut callback),
            )
            .await;
        let message = result.expect_err("must fail").to_string();
        assert!(message.contains("demo failed"), "{message}");
        assert!(message.contains("bad thing"), "{message}");
        assert_eq!(seen, ["progress=1", "out"]);
        let info = std::fs::read_to_string(dir.path().join("info_script.log")).expect("info log");
        assert!(
            info.contains("$ sh -c") && info.contains("progress=1"),
            "{info}"
        );
        let errors =
            std::fs::read_to_string(dir.path().join("error_script.log")).expect("error log");
        assert!(errors.contains("bad thing"), "{errors}");
    }
}
