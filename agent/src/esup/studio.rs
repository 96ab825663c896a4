//! The `studio` pipeline (placeholder until it lands).

use super::pipeline::{PipelineResult, TaskContext, TaskError};

/// Builds `studio_base.mp4` from the mediapackage, then encodes it.
pub async fn run(ctx: &TaskContext) -> PipelineResult {
    let _ = ctx;
    Err(TaskError::Failed(
        "studio is not implemented yet".to_owned(),
    ))
}
