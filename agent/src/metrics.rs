//! The agent's `worker_update_*` metrics (names are a contract with dashboards and alerts), and
//! the registry the runner layer's task metrics join.
//!
//! Counters are persisted in the state directory, so an update (a new process, a new version)
//! does not reset them: `worker_update_success_total` counts every update this install ever made.

use std::sync::Mutex;

use prometheus::{
    register_gauge_with_registry, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry, register_int_counter_with_registry,
    register_int_gauge_vec_with_registry, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGaugeVec, Registry, TextEncoder,
};

use crate::state::{Counters, StateDir};
use esup_runner::metrics::TaskMetrics;

/// The metrics and their persisted counters.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    state: StateDir,
    counters: Mutex<Counters>,
    attempts: IntCounter,
    successes: IntCounter,
    failures: IntCounterVec,
    rollbacks: IntCounterVec,
    deferred: IntCounter,
    download_bytes: IntCounter,
    bytes_by_kind: IntCounterVec,
    /// `worker_update_duration_seconds{phase}`: check, download, total (probation included).
    pub durations: HistogramVec,
    /// `worker_update_last_check_timestamp_seconds`.
    pub last_check: Gauge,
    /// `worker_update_manifest_expiry_timestamp_seconds`.
    pub manifest_expiry: Gauge,
    version: IntGaugeVec,
    /// The ESUP task metrics (`worker_task*`, `worker_runner_registered`), in this registry.
    pub tasks: TaskMetrics,
}

impl Telemetry {
    /// Registers the metrics, starting the counters from the persisted values.
    pub fn new(state: StateDir, running_version: &str) -> Self {
        let registry = Registry::new();
        let counters = state.counters().unwrap_or_else(|error| {
            tracing::warn!(%error, "counters unreadable; starting from zero");
            Counters::default()
        });
        let telemetry = Telemetry {
            attempts: register_int_counter_with_registry!(
                "worker_update_attempt_total",
                "Update attempts started",
                registry
            )
            .expect("metric registered once"),
            successes: register_int_counter_with_registry!(
                "worker_update_success_total",
                "Updates that passed probation",
                registry
            )
            .expect("metric registered once"),
            failures: register_int_counter_vec_with_registry!(
                "worker_update_failure_total",
                "Rejected or failed updates, by reason",
                &["reason"],
                registry
            )
            .expect("metric registered once"),
            rollbacks: register_int_counter_vec_with_registry!(
                "worker_update_rollback_total",
                "Updates rolled back after probation failed, by reason",
                &["reason"],
                registry
            )
            .expect("metric registered once"),
            deferred: register_int_counter_with_registry!(
                "worker_update_deferred_total",
                "Updates deferred past the maximum busy wait",
                registry
            )
            .expect("metric registered once"),
            download_bytes: register_int_counter_with_registry!(
                "worker_update_download_bytes_total",
                "Artifact bytes downloaded",
                registry
            )
            .expect("metric registered once"),
            bytes_by_kind: register_int_counter_vec_with_registry!(
                "worker_update_bytes_downloaded_total",
                "Update bytes downloaded, by kind: full (artifact) or delta (patch)",
                &["kind"],
                registry
            )
            .expect("metric registered once"),
            durations: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "worker_update_duration_seconds",
                    "Time spent per update phase"
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0
                ]),
                &["phase"],
                registry
            )
            .expect("metric registered once"),
            last_check: register_gauge_with_registry!(
                "worker_update_last_check_timestamp_seconds",
                "When the agent last checked for an update (Unix seconds)",
                registry
            )
            .expect("metric registered once"),
            manifest_expiry: register_gauge_with_registry!(
                "worker_update_manifest_expiry_timestamp_seconds",
                "Expiry of the last verified channel statement (Unix seconds)",
                registry
            )
            .expect("metric registered once"),
            version: register_int_gauge_vec_with_registry!(
                "worker_version_current",
                "1 for the running version",
                &["version"],
                registry
            )
            .expect("metric registered once"),
            tasks: TaskMetrics::register(&registry).expect("task metrics registered once"),
            registry,
            state,
            counters: Mutex::new(counters.clone()),
        };
        telemetry.attempts.inc_by(counters.attempts);
        telemetry.successes.inc_by(counters.successes);
        telemetry.deferred.inc_by(counters.deferred);
        telemetry.download_bytes.inc_by(counters.download_bytes);
        for (kind, count) in &counters.bytes_by_kind {
            telemetry
                .bytes_by_kind
                .with_label_values(&[kind])
                .inc_by(*count);
        }
        for (reason, count) in &counters.failures {
            telemetry
                .failures
                .with_label_values(&[reason])
                .inc_by(*count);
        }
        for (reason, count) in &counters.rollbacks {
            telemetry
                .rollbacks
                .with_label_values(&[reason])
                .inc_by(*count);
        }
        telemetry
            .version
            .with_label_values(&[running_version])
            .set(1);
        // Registered here and not kept: its one series never changes.
        register_int_gauge_vec_with_registry!(
            "worker_agent_build_info",
            "1, labelled with the agent's build",
            &["version", "commit", "target"],
            telemetry.registry
        )
        .expect("metric registered once")
        .with_label_values(&[running_version, env!("BUILD_COMMIT"), env!("BUILD_TARGET")])
        .set(1);
        telemetry
    }

    fn persist(&self, change: impl FnOnce(&mut Counters)) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut counters);
        if let Err(error) = self.state.save_counters(&counters) {
            tracing::warn!(%error, "could not persist update counters");
        }
    }

    /// An attempt started.
    pub fn attempt(&self) {
        self.attempts.inc();
        self.persist(|c| c.attempts += 1);
    }

    /// An update passed probation.
    pub fn success(&self) {
        self.successes.inc();
        self.persist(|c| c.successes += 1);
    }

    /// An update was rejected or failed.
    pub fn failure(&self, reason: &str) {
        self.failures.with_label_values(&[reason]).inc();
        self.persist(|c| *c.failures.entry(reason.to_owned()).or_default() += 1);
    }

    /// An update was rolled back.
    pub fn rollback(&self, reason: &str) {
        self.rollbacks.with_label_values(&[reason]).inc();
        self.persist(|c| *c.rollbacks.entry(reason.to_owned()).or_default() += 1);
    }

    /// An update was deferred past the maximum busy wait.
    pub fn deferred(&self) {
        self.deferred.inc();
        self.persist(|c| c.deferred += 1);
    }

    /// Bytes downloaded of `kind` (`full` or `delta`), persisted by the caller's next counter
    /// change or [`Self::flush`].
    pub fn downloaded(&self, kind: &str, bytes: u64) {
        self.download_bytes.inc_by(bytes);
        self.bytes_by_kind.with_label_values(&[kind]).inc_by(bytes);
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counters.download_bytes += bytes;
        *counters.bytes_by_kind.entry(kind.to_owned()).or_default() += bytes;
    }

    /// Persists the counters now.
    pub fn flush(&self) {
        self.persist(|_| {});
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
