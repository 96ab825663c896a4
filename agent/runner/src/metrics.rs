//! The task metrics (`worker_tasks_running`, `worker_task_total`,
//! `worker_task_duration_seconds`, `worker_task_progress_percent`, `worker_runner_registered`,
//! `worker_task_refusals_total`;
//! names, labels and buckets are a contract with dashboards and alerts), registered in the
//! registry of whoever embeds the layer, so they show up in its `/metrics`.

use prometheus::{
    register_gauge_vec_with_registry, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry, register_int_gauge_vec_with_registry, GaugeVec,
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry,
};

use crate::status::TaskStatus;
use crate::task_type::TaskType;

/// Buckets of `worker_task_duration_seconds`: one second to five hours.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 18000.0,
];

/// The `reason` labels of `worker_task_refusals_total`, each also written `(reason: X)` at the
/// end of the refusal's message (HTTP detail or task error) and as the log line's `reason`.
pub const REFUSAL_REASONS: &[&str] = &[
    // /task/run refused
    "callback_origin",
    "disk_full",
    "task_locked",
    // a running task stopped at its disk bound
    "task_disk_limit",
    // a source URL or redirect hop refused
    "scheme",
    "host_not_allowed",
    "too_many_redirects",
    "loopback",
    "link_local",
    "private_network",
    "unspecified",
    "broadcast",
    "multicast",
];

/// The refusal reason a message ends with (`... (reason: X)`), when it is one of
/// [`REFUSAL_REASONS`].
pub fn refusal_reason(message: &str) -> Option<&'static str> {
    let (_, rest) = message.rsplit_once("(reason: ")?;
    let reason = rest.split(')').next()?;
    REFUSAL_REASONS.iter().copied().find(|r| *r == reason)
}

/// The task metrics (cheap to clone: every clone updates the same series).
#[derive(Debug, Clone)]
pub struct TaskMetrics {
    /// `worker_tasks_running{task_type}`: ESUP tasks running now.
    pub tasks_running: IntGaugeVec,
    /// `worker_task_total{task_type,status}`: finished tasks (completed, failed, timeout).
    pub tasks_finished: IntCounterVec,
    /// `worker_task_duration_seconds{task_type}`: how long finished tasks ran.
    pub task_durations: HistogramVec,
    /// `worker_task_progress_percent{runner_id}`: progress of the task an instance runs.
    pub task_progress: GaugeVec,
    /// `worker_runner_registered{runner_id}`: 1 while the instance is registered with the Manager.
    pub runner_registered: IntGaugeVec,
    /// `worker_task_refusals_total{reason}`: tasks refused (or stopped) by a safety rule.
    pub refusals: IntCounterVec,
}

impl TaskMetrics {
    /// Registers the task metrics in `registry`, with a zero series for every task type (and
    /// final status), so that the first task shows up in `rate()` / `increase()`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = TaskMetrics {
            tasks_running: register_int_gauge_vec_with_registry!(
                "worker_tasks_running",
                "ESUP tasks running now, by type",
                &["task_type"],
                registry
            )?,
            tasks_finished: register_int_counter_vec_with_registry!(
                "worker_task_total",
                "ESUP tasks finished, by type and final status",
                &["task_type", "status"],
                registry
            )?,
            task_durations: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "worker_task_duration_seconds",
                    "Run time of finished ESUP tasks, by type",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["task_type"],
                registry
            )?,
            task_progress: register_gauge_vec_with_registry!(
                "worker_task_progress_percent",
                "Progress of the task a runner instance runs (0 when idle)",
                &["runner_id"],
                registry
            )?,
            runner_registered: register_int_gauge_vec_with_registry!(
                "worker_runner_registered",
                "1 while the runner instance is registered with the ESUP Manager",
                &["runner_id"],
                registry
            )?,
            refusals: register_int_counter_vec_with_registry!(
                "worker_task_refusals_total",
                "ESUP tasks refused or stopped by a safety rule (sources, callbacks, locks, disk), by reason",
                &["reason"],
                registry
            )?,
        };
        for reason in REFUSAL_REASONS {
            metrics.refusals.with_label_values(&[reason]).inc_by(0);
        }
        for task_type in TaskType::ALL {
            let task_type = task_type.as_str();
            let _ = metrics.task_durations.with_label_values(&[task_type]);
            metrics.tasks_running.with_label_values(&[task_type]).set(0);
            for status in TaskStatus::FINAL {
                metrics
                    .tasks_finished
                    .with_label_values(&[task_type, status.as_str()])
                    .inc_by(0);
            }
        }
        Ok(metrics)
    }

    /// Counts a refusal whose message ends with `(reason: X)` (other messages are not counted).
    pub fn refused(&self, message: &str) {
        if let Some(reason) = refusal_reason(message) {
            self.refusals.with_label_values(&[reason]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn refusal_reasons_are_read_from_the_end_of_the_message() {
        assert_eq!(
            refusal_reason("x: address 127.0.0.1 ... (reason: loopback)"),
            Some("loopback")
        );
        assert_eq!(
            refusal_reason("a (MANAGER_CALLBACK_ORIGINS lists more) (reason: callback_origin)"),
            Some("callback_origin")
        );
        assert_eq!(refusal_reason("(reason: made_up)"), None);
        assert_eq!(refusal_reason("ffmpeg failed"), None);
        let metrics = TaskMetrics::register(&Registry::new()).expect("register");
        metrics.refused("... (reason: disk_full)");
        metrics.refused("not a refusal");
        assert_eq!(metrics.refusals.with_label_values(&["disk_full"]).get(), 1);
    }

    #[test]
    fn every_task_type_and_final_status_has_a_series_from_the_start() {
        let registry = Registry::new();
        TaskMetrics::register(&registry).expect("register");
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .expect("encode");
        let text = String::from_utf8(text).expect("utf-8");
        for task_type in ["encoding", "studio", "transcription"] {
            assert!(text.contains(&format!(
                "worker_tasks_running{{task_type=\"{task_type}\"}} 0"
            )));
            assert!(text.contains(&format!(
                "worker_task_duration_seconds_count{{task_type=\"{task_type}\"}} 0"
            )));
            for status in ["completed", "failed", "timeout"] {
                assert!(text.contains(&format!(
                    "worker_task_total{{status=\"{status}\",task_type=\"{task_type}\"}} 0"
                )));
            }
        }
        assert!(
            TaskMetrics::register(&registry).is_err(),
            "a registry holds the task metrics once"
        );
    }
}
