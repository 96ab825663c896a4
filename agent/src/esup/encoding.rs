//! The `encoding` pipeline (placeholder until it lands).

use std::path::Path;

use super::pipeline::{PipelineResult, TaskContext, TaskError};

/// Encodes `input` into `ctx.output_dir`.
pub async fn run(ctx: &TaskContext, input: &Path) -> PipelineResult {
    let _ = (ctx, input);
    Err(TaskError::Failed(
        "encoding is not implemented yet".to_owned(),
    ))
}
