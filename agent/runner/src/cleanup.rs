//! Removal of old task directories (`MAX_FILE_AGE_DAYS`, every `CLEANUP_INTERVAL_HOURS`).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::paths::valid_task_id;
use crate::tasklock;

/// Removes every task directory under `storage_dir` last modified more than `max_age` ago,
/// except those `is_running` names. Only directories whose names are task ids are considered,
/// so nothing else an operator keeps there is touched. Returns how many were removed.
pub fn remove_old_tasks(
    storage_dir: &Path,
    max_age: Duration,
    is_running: impl Fn(&str) -> bool,
) -> usize {
    let Ok(entries) = std::fs::read_dir(storage_dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || !valid_task_id(&name) || is_running(&name) {
            continue;
        }
        let newest = newest_mtime(&entry.path()).unwrap_or(now);
        if now.duration_since(newest).unwrap_or_default() <= max_age {
            continue;
        }
        // Running on another instance sharing STORAGE_DIR: not old, whatever its times say.
        let Ok(_lock) = tasklock::try_lock(storage_dir, &name) else {
            continue;
        };
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                removed += 1;
                tracing::info!(task_id = %name, "removed an old task directory");
            }
            Err(error) => {
                tracing::warn!(task_id = %name, %error, "could not remove an old task directory")
            }
        }
    }
    removed
}

/// The newest modification time of the directory and its direct entries (a task that just
/// wrote its manifest is not old, whatever the directory's own time says).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            newest = newest.max(modified);
        }
    }
    Some(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_old_task_directories() {
        let storage = tempfile::tempdir().expect("tempdir");
        for name in ["old-task", "running-task", "new-task", "not a task id"] {
            std::fs::create_dir(storage.path().join(name)).expect("dir");
            std::fs::write(storage.path().join(name).join("f"), b"x").expect("file");
        }
        std::fs::write(storage.path().join("loose-file"), b"x").expect("file");
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        for name in ["old-task", "running-task", "not a task id"] {
            let dir = storage.path().join(name);
            for path in [dir.join("f"), dir.clone()] {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .or_else(|_| std::fs::File::open(&path))
                    .and_then(|f| f.set_modified(old))
                    .expect("set mtime");
            }
        }
        let removed = remove_old_tasks(storage.path(), Duration::from_secs(7 * 86_400), |id| {
            id == "running-task"
        });
        assert_eq!(removed, 1);
        assert!(!storage.path().join("old-task").exists());
        for kept in ["running-task", "new-task", "not a task id", "loose-file"] {
            assert!(storage.path().join(kept).exists(), "{kept} kept");
        }
    }
}
