//! Disk limits of tasks (issue 14, item 4): the free space of `STORAGE_DIR` checked before a
//! task starts (`MIN_FREE_DISK_GB`), and a bound on what one task may write in its workspace
//! (`MAX_TASK_DISK_GB`), watched while it runs (the tools are stopped when it is exceeded) and
//! checked once more before its manifest is written. A task over its bound leaves nothing
//! half-written: its inputs and outputs are removed, its logs and status kept.

use std::path::Path;
use std::time::Duration;

use crate::error::TaskError;
use crate::process::ProcessRunner;

/// How often a running task's workspace is measured.
const WATCH_PERIOD: Duration = Duration::from_millis(500);

/// Bytes per GB in these settings (10^9, like `MAX_VIDEO_SIZE_GB`).
const GB: f64 = 1e9;

/// `gb` GB in bytes (fractions allowed; negative is 0).
pub fn gb_to_bytes(gb: f64) -> u64 {
    // Saturating float-to-int conversion is what we want for absurd values.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = (gb.max(0.0) * GB) as u64;
    bytes
}

/// Bytes available to unprivileged writers on the file system of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// Why a task may not start for lack of space (reason `disk_full`), if it may not.
pub fn check_free(storage_dir: &Path, min_free_bytes: u64) -> Result<(), String> {
    let free = free_bytes(storage_dir).map_err(|e| {
        format!(
            "cannot read the free space of STORAGE_DIR {}: {e}",
            storage_dir.display()
        )
    })?;
    if free < min_free_bytes {
        #[allow(clippy::cast_precision_loss)]
        let (free_gb, min_gb) = (free as f64 / GB, min_free_bytes as f64 / GB);
        return Err(format!(
            "Not enough free disk: STORAGE_DIR {} has {free_gb:.3} GB free, \
             MIN_FREE_DISK_GB is {min_gb} (reason: disk_full)",
            storage_dir.display()
        ));
    }
    Ok(())
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
pub fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => used_bytes(&entry.path()),
            Ok(meta) if meta.is_file() => meta.len(),
            _ => 0,
        })
        .sum()
}

/// The error of a task over its bound.
pub fn over_limit(used: u64, max: u64) -> TaskError {
    #[allow(clippy::cast_precision_loss)]
    let (used_gb, max_gb) = (used as f64 / GB, max as f64 / GB);
    TaskError::BadInput(format!(
        "The task wrote {used_gb:.4} GB, more than MAX_TASK_DISK_GB ({max_gb} GB) allows; \
         its files were removed (reason: task_disk_limit)"
    ))
}

/// `Err` when `workspace` holds more than `max` bytes.
pub fn check_used(workspace: &Path, max: u64) -> Result<(), TaskError> {
    let used = used_bytes(workspace);
    if used > max {
        return Err(over_limit(used, max));
    }
    Ok(())
}

/// Measures `workspace` every [`WATCH_PERIOD`] while the task runs; past `max` bytes it aborts
/// the task (its tools are killed) with the disk-limit error. Abort the handle when the task ends.
pub fn watch(workspace: &Path, max: u64, process: ProcessRunner) -> tokio::task::JoinHandle<()> {
    let workspace = workspace.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCH_PERIOD).await;
            let dir = workspace.clone();
            let used = tokio::task::spawn_blocking(move || used_bytes(&dir))
                .await
                .unwrap_or_default();
            if used > max {
                tracing::warn!(
                    used,
                    max,
                    reason = "task_disk_limit",
                    "the task exceeds MAX_TASK_DISK_GB; stopping it"
                );
                process.abort(over_limit(used, max));
                return;
            }
        }
    })
}

/// Removes everything in `workspace` but the script logs: what a task over its bound wrote.
pub fn remove_written(workspace: &Path) {
    let Ok(entries) = std::fs::read_dir(workspace) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "info_script.log" || name == "error_script.log" {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "could not remove a file of a task over its disk bound");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(gb_to_bytes(0.01), 10_000_000);
        assert_eq!(gb_to_bytes(-1.0), 0);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("output/sub")).expect("dirs");
        std::fs::write(dir.path().join("a.mp4"), vec![0_u8; 1000]).expect("file");
        std::fs::write(dir.path().join("output/sub/b"), vec![0_u8; 500]).expect("file");
        std::fs::write(dir.path().join("info_script.log"), b"log").expect("log");
        assert_eq!(used_bytes(dir.path()), 1503);
        assert!(check_used(dir.path(), 1503).is_ok());
        let error = check_used(dir.path(), 1000).expect_err("over");
        assert!(
            error.to_string().contains("reason: task_disk_limit"),
            "{error}"
        );
        remove_written(dir.path());
        assert_eq!(used_bytes(dir.path()), 3, "only the log is left");
        assert!(free_bytes(dir.path()).expect("statvfs") > 0);
        assert!(check_free(dir.path(), u64::MAX)
            .expect_err("no disk is that big")
            .contains("reason: disk_full"));
    }
}
