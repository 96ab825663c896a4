//! One lock per task id across every runner instance and every agent process sharing
//! `STORAGE_DIR` (issue 14, item 3): `STORAGE_DIR/.locks/<task_id>.lock`, an advisory `flock`
//! (the standard library's `File::try_lock`, so no crate is needed) held from `/task/run` until
//! the task's status and pending completion are written, and briefly by `/task/delete` and the
//! cleanup. A second `/task/run` or `/task/delete` of a running task id elsewhere gets 409 and
//! the running workspace stays intact.
//!
//! `flock` locks belong to the open file, so two instances of one process exclude each other as
//! two processes do, and the kernel releases a lock when its holder dies (no stale locks after a
//! crash). Lock files are never removed while a task might use them (removing a lock file races
//! with a second opener); the cleanup removes those of tasks older than `MAX_FILE_AGE_DAYS`.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The directory of the lock files (not a valid task id, so never taken for a task).
pub const LOCK_DIR: &str = ".locks";

/// A held task lock; dropping it releases the lock.
#[derive(Debug)]
pub struct TaskLock {
    _file: File,
}

/// Why a task lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another instance (of this process or another sharing `STORAGE_DIR`) holds it.
    #[error(
        "task {0} is running on another runner instance sharing STORAGE_DIR (reason: task_locked)"
    )]
    Held(String),
    /// The lock file could not be opened or locked.
    #[error("task {task_id}: lock file {path}: {source}", path = path.display())]
    Io {
        /// The task.
        task_id: String,
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `STORAGE_DIR/.locks/<task_id>.lock`.
pub fn lock_path(storage_dir: &Path, task_id: &str) -> PathBuf {
    storage_dir.join(LOCK_DIR).join(format!("{task_id}.lock"))
}

/// Takes the lock of `task_id` without waiting.
pub fn try_lock(storage_dir: &Path, task_id: &str) -> Result<TaskLock, LockError> {
    let path = lock_path(storage_dir, task_id);
    let io = |source| LockError::Io {
        task_id: task_id.to_owned(),
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(TaskLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(LockError::Held(task_id.to_owned())),
        Err(TryLockError::Error(source)) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_released_on_drop() {
        let storage = tempfile::tempdir().expect("tempdir");
        let held = try_lock(storage.path(), "t1").expect("first");
        assert!(matches!(
            try_lock(storage.path(), "t1"),
            Err(LockError::Held(id)) if id == "t1"
        ));
        let other = try_lock(storage.path(), "t2").expect("another task id");
        drop(held);
        let again = try_lock(storage.path(), "t1").expect("released");
        drop((again, other));
    }
}
