//! The `transcription` pipeline (placeholder until it lands).

use super::pipeline::{PipelineResult, TaskContext, TaskError};

/// Transcribes the source into `<stem>.vtt`.
pub async fn run(ctx: &TaskContext) -> PipelineResult {
    let _ = ctx;
    Err(TaskError::Failed(
        "transcription is not implemented yet".to_owned(),
    ))
}
