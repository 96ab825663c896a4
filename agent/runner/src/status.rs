//! A task's status, as `/task/status`, `status.json`, the completion call and the task
//! metrics name it.

use serde::{Deserialize, Serialize};

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Started, not finished.
    Running,
    /// Finished, `manifest.json` written.
    Completed,
    /// Failed (a stop included).
    Failed,
    /// The script timeout elapsed.
    Timeout,
}

impl TaskStatus {
    /// The statuses a task ends with (`worker_task_total{status}`).
    pub const FINAL: [TaskStatus; 3] = [
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Timeout,
    ];

    /// The protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Timeout => "timeout",
        }
    }
}
