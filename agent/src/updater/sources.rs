//! Where the updater fetches an artifact from, and what a bad download costs the source: a
//! hash/size (or other non-retryable) verdict condemns the *source* that sent the bytes for a
//! while ([`crate::retry::SourceVerdicts`], capped exponential backoff), never the bytes. The
//! same bytes are tried at once from the next source (the release's signed `mirrors` in order,
//! then the signed URL, then the update server's own copy when that URL points elsewhere), and
//! from the condemned source again once its backoff ends. A signed mirror that cannot be
//! reached is skipped the same way (with its reason): only the last sources, the signed URL and
//! the server's copy, end the attempt on network trouble, to be retried at the next poll.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use manifests::{InstallPlan, Timestamp};

use super::Updater;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover::Outcome;
use crate::retry;

impl Updater {
    /// The sources of `plan`'s artifact, in the order they are tried.
    fn sources(&self, plan: &InstallPlan) -> Vec<String> {
        let client = &self.session.client;
        let signed = client.resolve(&plan.artifact.url);
        retry::artifact_sources(
            client.base(),
            &plan.artifact.mirrors,
            &signed,
            &plan.artifact.sha256,
        )
    }

    /// How long every source of `plan` is still avoided (`None`: one may be tried now).
    pub(super) fn sources_waiting(&self, plan: &InstallPlan) -> Option<Duration> {
        let now = Instant::now();
        self.sources(plan)
            .iter()
            .map(|source| self.condemned.waiting(source, now))
            .min()
            .flatten()
    }

    /// Downloads, verifies and stages `plan`'s artifact from the first source not avoided.
    /// Every failure is counted (`worker_update_failure_total{reason}`) and reported once per
    /// release and reason; network trouble ends the attempt (retried at the next poll), a
    /// verdict condemns the source and moves on to the next one.
    pub(super) async fn download_from_sources(
        &mut self,
        plan: &InstallPlan,
        correlation_id: &str,
        started: Instant,
    ) -> Result<PathBuf, UpdateFailure> {
        let mut last = None;
        for source in self.sources(plan) {
            if let Some(wait) = self.condemned.waiting(&source, Instant::now()) {
                tracing::info!(source = %source, retry_in_secs = wait.as_secs(), "artifact source avoided for now (it served bad bytes)");
                continue;
            }
            match self.download_and_stage(plan, &source).await {
                Ok(staged) => {
                    self.condemned.acquit(&source);
                    return Ok(staged);
                }
                Err(failure) => {
                    self.count_attempt_failure(plan, correlation_id, &failure, started);
                    let mirror = plan.artifact.mirrors.contains(&source);
                    if failure.retryable && !mirror {
                        return Err(failure);
                    }
                    let pause = self.condemned.condemn(&source, Instant::now());
                    let next_retry_at = Timestamp::now()
                        .plus_secs(i64::try_from(pause.as_secs()).unwrap_or(i64::MAX));
                    if failure.retryable {
                        tracing::warn!(
                            source = %source,
                            reason = %failure.reason,
                            error = %failure.message,
                            next_retry_in_secs = pause.as_secs(),
                            %next_retry_at,
                            "artifact mirror unreachable, skipped for a while; trying the next source"
                        );
                    } else {
                        tracing::warn!(
                            source = %source,
                            reason = %failure.reason,
                            error = %failure.message,
                            next_retry_in_secs = pause.as_secs(),
                            %next_retry_at,
                            "artifact source condemned for a while; trying the next source, if any"
                        );
                    }
                    last = Some(failure);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            UpdateFailure::retryable(
                FailureReason::Download,
                format!(
                    "every source of {} is avoided for now",
                    plan.artifact.sha256
                ),
            )
        }))
    }

    /// Counts a failed download of `plan` and reports it once per release and reason, so a
    /// flaky or hostile mirror does not flood the audit trail.
    pub(super) fn count_attempt_failure(
        &mut self,
        plan: &InstallPlan,
        correlation_id: &str,
        failure: &UpdateFailure,
        started: Instant,
    ) {
        self.session.telemetry.failure(&failure.reason.label());
        let to = plan.version.to_string();
        if self
            .reported
            .insert(format!("attempt/{to}/{}", failure.reason))
        {
            let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            // One attempt can fail at several sources: one outbox file per reason.
            self.queue_outcome(
                &format!("{correlation_id}-{}", failure.reason),
                &to,
                Outcome::Failure,
                failure.reason,
                duration,
            );
        }
    }
}
