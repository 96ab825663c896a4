//! Helpers the media pipelines share: probing ([`probe`]), time values ([`clock`]), running
//! ffmpeg with `-progress pipe:1` mapped onto the task's progress, and `encoding.log`.

pub mod clock;
pub mod probe;
#[cfg(test)]
pub(crate) mod testkit;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::error::TaskError;
use crate::pipeline::TaskContext;
use crate::process::CommandOutput;
use crate::source::SourceKind;

/// Arguments every ffmpeg command of ours starts with: no banner, never read stdin, overwrite
/// our own intermediates, and machine-readable progress on stdout instead of the stats line.
pub fn ffmpeg_prelude() -> Vec<String> {
    [
        "-hide_banner",
        "-nostdin",
        "-y",
        "-nostats",
        "-progress",
        "pipe:1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The part of the task's progress (percent) one ffmpeg command covers, and how long (seconds
/// of output) that command will produce, so `out_time_us` maps onto `from..to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSpan {
    /// Progress when the command starts.
    pub from: f64,
    /// Progress when it ends.
    pub to: f64,
    /// Expected output duration in seconds.
    pub duration: f64,
}

impl ProgressSpan {
    /// The task progress for a `-progress` line, if the line carries the output time.
    pub fn percent_for(&self, line: &str) -> Option<f64> {
        // ffmpeg prints out_time_us, and out_time_ms which (historically) is microseconds too.
        let value = line
            .strip_prefix("out_time_us=")
            .or_else(|| line.strip_prefix("out_time_ms="))?;
        let micros: f64 = value.trim().parse().ok()?;
        if !micros.is_finite() || micros < 0.0 || self.duration <= 0.0 {
            return None;
        }
        let done = (micros / 1e6 / self.duration).clamp(0.0, 1.0);
        Some(self.from + (self.to - self.from) * done)
    }
}

/// Splits `from..to` into consecutive spans proportional to `weights`.
pub fn split_range(from: f64, to: f64, weights: &[f64]) -> Vec<(f64, f64)> {
    let total: f64 = weights.iter().sum();
    let mut start = from;
    weights
        .iter()
        .map(|w| {
            let end = if total > 0.0 {
                start + (to - from) * w / total
            } else {
                start
            };
            let span = (start, end);
            start = end;
            span
        })
        .collect()
}

/// `encoding.log` in the output directory: each command (shell-quoted, so it can be pasted into
/// a shell) followed by what it printed on stderr (the last 64 KiB). Appended to step by step,
/// so a failed task still shows how far it got.
#[derive(Debug, Clone)]
pub struct EncodingLog {
    path: PathBuf,
}

impl EncodingLog {
    /// A log at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        EncodingLog { path }
    }

    /// Appends `text` and a newline. Logging is best effort: a full disk shows up as a tool
    /// failure soon enough, and must not hide the tool's own error.
    pub async fn append(&self, text: &str) {
        if let Ok(mut file) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
        {
            let _ = file.write_all(text.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
    }
}

/// A command line as a POSIX shell reads it back.
pub fn shell_line(program: &OsStr, args: &[String]) -> String {
    std::iter::once(program.to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|word| shell_quote(&word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'=' | b':' | b'+')
        });
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs ffmpeg with `args` through the task's [`ProcessRunner`](super::process::ProcessRunner),
/// logging to `log`, moving the task progress along `span` as `-progress` lines arrive (and to
/// its end when the command succeeds). Stop and timeout come back untouched.
pub async fn run_ffmpeg(
    ctx: &TaskContext,
    log: &EncodingLog,
    label: &str,
    args: &[String],
    span: Option<ProgressSpan>,
) -> Result<CommandOutput, TaskError> {
    log.append(&format!(
        "[{label}] $ {}",
        shell_line(ctx.media.ffmpeg.as_os_str(), args)
    ))
    .await;
    let progress = ctx.progress.clone();
    let mut on_line = move |line: &str| {
        if let Some(percent) = span.and_then(|s| s.percent_for(line)) {
            progress.set(percent);
        }
    };
    let result = ctx
        .process
        .run(label, &ctx.media.ffmpeg, args, Some(&mut on_line))
        .await;
    match &result {
        Ok(output) => {
            log.append(output.stderr_tail.trim_end()).await;
            if let Some(span) = span {
                ctx.progress.set(span.to);
            }
        }
        Err(error) => log.append(&format!("[{label}] failed: {error}")).await,
    }
    result
}

/// Downloads `url` (checked like `source_url`: http(s), allowed hosts, extension for `kind`,
/// size cap) into the workspace as `<base_name>.<extension of the URL's file>`. `what` names the
/// input in error messages ("the watermark", "the presenter track").
pub async fn download(
    ctx: &TaskContext,
    what: &str,
    url: &str,
    kind: SourceKind,
    base_name: &str,
) -> Result<PathBuf, TaskError> {
    let (_, name) = ctx.fetcher.check_url(url, kind).map_err(|e| match e {
        TaskError::BadInput(m) => TaskError::BadInput(format!("{what}: {m}")),
        other => other,
    })?;
    // The extension passed the kind's allow-list, so the file name is safe.
    let extension = Path::new(&name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let file_name = format!("{base_name}.{extension}");
    let fetched = ctx
        .fetcher
        .fetch(url, kind, &ctx.workspace, &file_name, &ctx.process)
        .await
        .map_err(|e| match e {
            TaskError::BadInput(m) => TaskError::BadInput(format!("{what}: {m}")),
            TaskError::Failed(m) => TaskError::Failed(format!("{what}: {m}")),
            other => other,
        })?;
    Ok(fetched.path)
}

/// The largest even number <= `value`, at least 2 (yuv420p needs even dimensions).
pub fn even_floor(value: u32) -> u32 {
    (value & !1).max(2)
}

/// `value` rounded to the nearest even number, at least 2.
pub fn even_round(value: f64) -> u32 {
    // Dimensions are small positive numbers; the cast saturates for anything absurd.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let halves = (value / 2.0).round().max(1.0) as u32;
    halves.saturating_mul(2)
}

/// The file name of `path` for messages.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_map_onto_the_span() {
        let span = ProgressSpan {
            from: 20.0,
            to: 60.0,
            duration: 10.0,
        };
        assert_eq!(span.percent_for("out_time_us=5000000"), Some(40.0));
        assert_eq!(span.percent_for("out_time_ms=10000000"), Some(60.0));
        assert_eq!(span.percent_for("out_time_us=99000000"), Some(60.0));
        assert_eq!(span.percent_for("out_time_us=N/A"), None);
        assert_eq!(span.percent_for("out_time=00:00:01.000000"), None);
        assert_eq!(span.percent_for("progress=end"), None);
    }

    #[test]
    fn ranges_split_by_weight() {
        assert_eq!(
            split_range(0.0, 100.0, &[1.0, 3.0]),
            vec![(0.0, 25.0), (25.0, 100.0)]
        );
        assert_eq!(split_range(40.0, 40.0, &[1.0]), vec![(40.0, 40.0)]);
    }

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let line = shell_line(
            OsStr::new("ffmpeg"),
            &[
                "-filter_complex".into(),
                "[0:0]split=2[a][b]".into(),
                "it's".into(),
                "/o/360p_x.mp4".into(),
            ],
        );
        assert_eq!(
            line,
            r"ffmpeg -filter_complex '[0:0]split=2[a][b]' 'it'\''s' /o/360p_x.mp4"
        );
    }

    #[test]
    fn even_dimensions() {
        assert_eq!(even_floor(241), 240);
        assert_eq!(even_floor(1), 2);
        assert_eq!(even_round(45.0), 46);
        assert_eq!(even_round(44.9), 44);
        assert_eq!(even_round(0.0), 2);
    }
}
