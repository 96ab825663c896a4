//! `worker-agent task run`: one task run locally, without a Manager, with the same pipelines,
//! limits and on-disk layout as a dispatched task:
//!
//! ```text
//! <out>/<task-id>/            workspace (the source copy or download, intermediates, script logs)
//! <out>/<task-id>/output/     the results
//! <out>/<task-id>/manifest.json
//! ```
//!
//! Ctrl-C stops the task like `/task/stop` (the tools' process groups are killed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{LimitArgs, MediaArgs};
use crate::error::TaskError;
use crate::paths::{self, ResultManifest};
use crate::pipeline::{Parameters, Progress, TaskContext};
use crate::process::ProcessRunner;
use crate::source::{SourceKind, IMAGE_EXTENSIONS, MEDIA_EXTENSIONS};
use crate::task_type::TaskType;
use crate::{encoding, studio, transcription};

/// How often the progress is printed while the task runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Arguments of `worker-agent task run`.
#[derive(Debug, Clone, Args)]
pub struct LocalTaskArgs {
    /// Task type: encoding, studio or transcription.
    #[arg(long = "type", value_name = "TYPE")]
    pub task_type: String,
    /// The source: a local file, or an http(s) URL downloaded like a Manager's `source_url`
    /// (for studio, the mediapackage XML; its tracks are always downloaded over http(s)).
    #[arg(long, value_name = "FILE|URL")]
    pub source: String,
    /// Directory in which the task directory `<task-id>/` is created.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A task parameter (repeatable). JSON parameters are given as text, e.g.
    /// --param 'cut={"start":"00:00:01","end":"00:00:05"}'.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Task id (`[A-Za-z0-9_-]+`); a random UUID by default.
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// Media tools.
    #[command(flatten)]
    pub media: MediaArgs,
    /// Download and tool limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Why a local run failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A file or directory operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up downloads: {0}")]
    Client(#[from] reqwest::Error),
    /// The task failed (or was cancelled, or timed out).
    #[error("task {task_id} failed: {error}")]
    Task {
        /// The task.
        task_id: String,
        /// Why.
        error: TaskError,
    },
    /// `manifest.json` could not be written.
    #[error("writing the manifest: {0}")]
    Manifest(String),
}

impl LocalError {
    /// The process exit code: 2 for usage errors, 130 when cancelled (Ctrl-C), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            LocalError::Usage(_) => 2,
            LocalError::Task {
                error: TaskError::Cancelled,
                ..
            } => 130,
            _ => 1,
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LocalError + 'a {
    move |source| LocalError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A finished local task.
#[derive(Debug, Clone)]
pub struct LocalOutcome {
    /// The task id.
    pub task_id: String,
    /// `<out>/<task-id>`.
    pub workspace: PathBuf,
    /// `<out>/<task-id>/output`.
    pub output_dir: PathBuf,
    /// The pipeline's summary (`script_output`).
    pub script_output: String,
    /// Files under `output/`, as in `manifest.json`.
    pub files: Vec<String>,
}

/// Runs one task locally; prints the output directory and files (stdout) or
/// `worker-agent: error: <message>` (stderr); returns the exit code.
pub async fn run(args: LocalTaskArgs) -> i32 {
    match execute(args).await {
        Ok(outcome) => {
            println!("{}", outcome.script_output.trim_end());
            println!("output: {}", outcome.output_dir.display());
            for file in &outcome.files {
                println!("  {file}");
            }
            println!(
                "manifest: {}",
                outcome.workspace.join("manifest.json").display()
            );
            0
        }
        Err(error) => {
            eprintln!("worker-agent: error: {error}");
            error.exit_code()
        }
    }
}

/// Parses `key=value` parameters, refusing keys the task type does not accept (as the runner
/// answers 422 to a Manager) and keys given twice.
pub fn parse_parameters(task_type: TaskType, given: &[String]) -> Result<Parameters, LocalError> {
    let allowed = task_type.allowed_parameters();
    let mut map = serde_json::Map::new();
    for pair in given {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| LocalError::Usage(format!("--param {pair:?}: expected KEY=VALUE")))?;
        let key = key.trim();
        if !allowed.contains(&key) {
            return Err(LocalError::Usage(format!(
                "--param {key:?}: not a parameter of {task_type} tasks (allowed: {})",
                allowed.join(", ")
            )));
        }
        if map
            .insert(key.to_owned(), Value::String(value.to_owned()))
            .is_some()
        {
            return Err(LocalError::Usage(format!("--param {key:?} is given twice")));
        }
    }
    Ok(Parameters(map))
}

/// What a source of this task type must be.
fn source_kind(task_type: TaskType) -> SourceKind {
    match task_type {
        TaskType::Studio => SourceKind::Mediapackage,
        TaskType::Encoding | TaskType::Transcription => SourceKind::Media,
    }
}

/// The name the source gets in the workspace: its own when that is a safe path part, else
/// `source.<ext>`.
fn workspace_name(name: &str) -> String {
    if paths::valid_path_part(name) {
        return name.to_owned();
    }
    let extension = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    format!("source.{extension}")
}

/// Checks a local file's extension like the downloads check a URL's.
fn check_local_extension(name: &str, kind: SourceKind) -> Result<(), LocalError> {
    let extension = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let accepted: Vec<&str> = match kind {
        SourceKind::Media => MEDIA_EXTENSIONS.to_vec(),
        SourceKind::Mediapackage => vec!["xml", "smil"],
        SourceKind::Image => IMAGE_EXTENSIONS.to_vec(),
    };
    if accepted.contains(&extension.as_str()) {
        Ok(())
    } else {
        Err(LocalError::Usage(format!(
            "--source {name:?} has extension {extension:?}; expected one of: {}",
            accepted.join(" ")
        )))
    }
}

/// Runs the task; the caller prints.
pub async fn execute(args: LocalTaskArgs) -> Result<LocalOutcome, LocalError> {
    let task_type = TaskType::parse(&args.task_type).ok_or_else(|| {
        LocalError::Usage(format!(
            "--type {:?}: expected encoding, studio or transcription",
            args.task_type
        ))
    })?;
    let parameters = parse_parameters(task_type, &args.params)?;
    let task_id = match args.task_id {
        Some(id) if paths::valid_task_id(&id) => id,
        Some(id) => {
            return Err(LocalError::Usage(format!(
                "--task-id {id:?}: only letters, digits, '_' and '-' (at most 128)"
            )))
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let is_url = {
        let lower = args.source.to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    };
    let kind = source_kind(task_type);
    let local_source = if is_url {
        None
    } else {
        let path = PathBuf::from(&args.source);
        let meta = std::fs::metadata(&path).map_err(io("reading --source", &path))?;
        if !meta.is_file() {
            return Err(LocalError::Usage(format!(
                "--source {}: not a regular file",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        check_local_extension(&name, kind)?;
        Some((path, name))
    };

    std::fs::create_dir_all(&args.out).map_err(io("creating", &args.out))?;
    let workspace = args.out.join(&task_id);
    // create_dir (not _all): two runs must never share a workspace.
    std::fs::create_dir(&workspace).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            LocalError::Usage(format!(
                "{} already exists; choose another --task-id or --out",
                workspace.display()
            ))
        } else {
            io("creating", &workspace)(e)
        }
    })?;
    let output_dir = workspace.join("output");
    std::fs::create_dir(&output_dir).map_err(io("creating", &output_dir))?;

    let cancel = CancellationToken::new();
    let process = ProcessRunner::new(&workspace, args.limits.script_timeout(), cancel.clone());
    let fetcher = args.limits.source_fetcher()?;
    let ctrl_c = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("worker-agent: cancelling the task (Ctrl-C)");
                cancel.cancel();
            }
        }
    });
    let task_error = |error: TaskError| LocalError::Task {
        task_id: task_id.clone(),
        error,
    };

    let (source, source_name) = match local_source {
        Some((path, name)) => {
            let target = workspace.join(workspace_name(&name));
            tokio::fs::copy(&path, &target)
                .await
                .map_err(io("copying --source to", &target))?;
            (target, name)
        }
        None => {
            let (_, name) = fetcher.check_url(&args.source, kind).map_err(task_error)?;
            let fetched = fetcher
                .fetch(
                    &args.source,
                    kind,
                    &workspace,
                    &workspace_name(&name),
                    &process,
                )
                .await
                .map_err(task_error)?;
            (fetched.path, fetched.name)
        }
    };

    let ctx = TaskContext {
        task_id: task_id.clone(),
        workspace: workspace.clone(),
        output_dir: output_dir.clone(),
        source,
        source_name,
        parameters,
        media: Arc::new(args.media.media_config()),
        process,
        progress: Progress::default(),
        fetcher,
    };
    tracing::info!(task_id = %task_id, task_type = %task_type, workspace = %workspace.display(), "local task started");
    let reporter = tokio::spawn({
        let progress = ctx.progress.clone();
        let task_id = task_id.clone();
        async move {
            let mut shown = -1.0;
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let now = progress.get();
                if (now - shown).abs() >= 1.0 {
                    eprintln!("worker-agent: task {task_id}: {now:.0} %");
                    shown = now;
                }
            }
        }
    });
    let result = match task_type {
        TaskType::Encoding => encoding::run(&ctx, &ctx.source).await,
        TaskType::Studio => studio::run(&ctx).await,
        TaskType::Transcription => transcription::run(&ctx).await,
    };
    reporter.abort();
    ctrl_c.abort();
    let script_output = result.map_err(task_error)?;

    let files = paths::list_outputs(&output_dir).map_err(io("listing", &output_dir))?;
    let manifest = ResultManifest {
        task_id: task_id.clone(),
        files: files.clone(),
    };
    let bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| LocalError::Manifest(e.to_string()))?;
    crate::fs::write_atomic(&workspace.join("manifest.json"), &bytes)
        .map_err(|e| LocalError::Manifest(e.to_string()))?;
    tracing::info!(task_id = %task_id, files = files.len(), "local task completed");
    Ok(LocalOutcome {
        task_id,
        workspace,
        output_dir,
        script_output,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testkit;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LocalTaskArgs,
    }

    fn args(words: &[&str]) -> LocalTaskArgs {
        Cli::try_parse_from(std::iter::once("task-run").chain(words.iter().copied()))
            .expect("arguments parse")
            .args
    }

    #[test]
    fn parameters_are_checked_against_the_task_type() {
        let given = [
            "cut={\"start\":\"00:00:01\",\"end\":\"00:00:02\"}".to_owned(),
            "video_id=7".to_owned(),
        ];
        let parameters = parse_parameters(TaskType::Encoding, &given).expect("valid");
        assert_eq!(parameters.text("video_id").as_deref(), Some("7"));
        assert!(parameters.json("cut").expect("json").is_some());
        for (task_type, pair, expected) in [
            (
                TaskType::Encoding,
                "presenter=mid",
                "\"presenter\": not a parameter of encoding tasks (allowed: rendition, cut",
            ),
            (
                TaskType::Studio,
                "language=fr",
                "not a parameter of studio tasks",
            ),
            (TaskType::Encoding, "video_id", "expected KEY=VALUE"),
        ] {
            let error = parse_parameters(task_type, &[pair.to_owned()]).expect_err("refused");
            assert!(error.to_string().contains(expected), "{pair}: {error}");
            assert_eq!(error.exit_code(), 2);
        }
        let twice = parse_parameters(
            TaskType::Encoding,
            &["video_id=1".to_owned(), "video_id=2".to_owned()],
        );
        assert!(twice
            .expect_err("refused")
            .to_string()
            .contains("given twice"));
        assert_eq!(workspace_name("Ma vidéo.MP4"), "source.mp4");
        assert_eq!(workspace_name("clip-1.mp4"), "clip-1.mp4");
    }

    #[tokio::test]
    async fn usage_errors_create_nothing() {
        let out = tempfile::tempdir().expect("out");
        let clip = out.path().join("clip.mp4");
        std::fs::write(&clip, b"x").expect("write");
        let out_arg = out.path().join("tasks").to_string_lossy().into_owned();
        let clip_arg = clip.to_string_lossy().into_owned();
        for (words, expected) in [
            (
                vec!["--type", "resize", "--source", &clip_arg, "--out", &out_arg],
                "--type \"resize\"",
            ),
            (
                vec![
                    "--type",
                    "encoding",
                    "--source",
                    &clip_arg,
                    "--out",
                    &out_arg,
                    "--param",
                    "model=base",
                ],
                "not a parameter of encoding tasks",
            ),
            (
                vec![
                    "--type",
                    "encoding",
                    "--source",
                    &clip_arg,
                    "--out",
                    &out_arg,
                    "--task-id",
                    "../x",
                ],
                "--task-id \"../x\"",
            ),
            (
                vec!["--type", "studio", "--source", &clip_arg, "--out", &out_arg],
                "expected one of: xml smil",
            ),
        ] {
            let error = execute(args(&words)).await.expect_err("refused");
            assert!(error.to_string().contains(expected), "{words:?}: {error}");
            assert_eq!(error.exit_code(), 2);
        }
        let missing = execute(args(&[
            "--type",
            "encoding",
            "--source",
            "/nonexistent/a.mp4",
            "--out",
            &out_arg,
        ]))
        .await
        .expect_err("refused");
        assert!(
            missing
                .to_string()
                .starts_with("reading --source /nonexistent/a.mp4:"),
            "{missing}"
        );
        assert!(!out.path().join("tasks").exists());
    }

    #[tokio::test]
    async fn encodes_a_downloaded_source_and_writes_the_manifest() {
        let media = tempfile::tempdir().expect("media");
        testkit::clip(&media.path().join("tiny clip.mp4"), 160, 90, 2, true);
        let out = tempfile::tempdir().expect("out");
        let out_arg = out.path().to_string_lossy().into_owned();
        // The loopback server stands in for the host a Manager's source_url points at.
        let base = testkit::serve_dir(media.path().to_owned()).await;
        let url = format!("{base}/tiny%20clip.mp4");
        let outcome = execute(args(&[
            "--type",
            "encoding",
            "--source",
            &url,
            "--out",
            &out_arg,
            "--task-id",
            "local-1",
            "--param",
            "video_title=Tiny",
            "--source-allowed-hosts",
            "127.0.0.1",
            "--source-allow-private-networks",
            "1",
        ]))
        .await
        .expect("task runs");
        assert_eq!(outcome.workspace, out.path().join("local-1"));
        assert!(outcome.workspace.join("tiny clip.mp4").is_file());
        assert!(
            outcome.files.contains(&"90p_tiny_clip.mp4".to_owned()),
            "{:?}",
            outcome.files
        );
        assert!(outcome.files.contains(&"info_video.json".to_owned()));
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(outcome.workspace.join("manifest.json")).expect("manifest"),
        )
        .expect("json");
        assert_eq!(manifest["task_id"], "local-1");
        assert_eq!(
            manifest["files"].as_array().map(Vec::len),
            Some(outcome.files.len())
        );
        // The same task id again is refused instead of mixing two runs.
        let again = execute(args(&[
            "--type",
            "encoding",
            "--source",
            &url,
            "--out",
            &out_arg,
            "--task-id",
            "local-1",
        ]))
        .await
        .expect_err("refused");
        assert!(again.to_string().contains("already exists"), "{again}");
        // A failing task says why and exits 1.
        let bad = execute(args(&[
            "--type",
            "encoding",
            "--source",
            &url,
            "--out",
            &out_arg,
            "--param",
            "rendition=[]",
            "--source-allow-private-networks",
            "1",
        ]))
        .await
        .expect_err("refused");
        assert!(
            bad.to_string()
                .contains("failed: parameter rendition: expected an object"),
            "{bad}"
        );
        assert_eq!(bad.exit_code(), 1);
    }
}
