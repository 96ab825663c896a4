//! Prometheus metrics of the server (names are a contract with dashboards and alert rules).

use prometheus::{
    register_gauge_vec_with_registry, register_histogram_vec_with_registry,
    register_histogram_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, Encoder, GaugeVec, Histogram, HistogramOpts,
    HistogramVec, IntCounterVec, IntGaugeVec, Registry, TextEncoder,
};

/// Every metric the server exports, all under the `update_server_` namespace (issue 12 renamed
/// them; the old names are listed in wiki/analytics/metrics-and-observability.md).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `update_server_http_requests_total{route,status}`.
    pub http_requests: IntCounterVec,
    /// `update_server_http_request_duration_seconds{route}`.
    pub http_duration: HistogramVec,
    /// `update_server_fleet_workers{version,channel}`: workers seen within the stale window.
    pub fleet_workers: IntGaugeVec,
    /// `update_server_fleet_workers_stale{channel}`: workers not seen within the stale window.
    pub fleet_workers_stale: IntGaugeVec,
    /// `update_server_update_reports_total{outcome,reason,version}`.
    pub update_reports: IntCounterVec,
    /// `update_server_channel_serial{channel}`.
    pub channel_serial: IntGaugeVec,
    /// `update_server_channel_rollout_ratio{channel}`: the rollout share, 0..1 (Prometheus
    /// convention: ratios, not percents).
    pub channel_rollout_ratio: GaugeVec,
    /// `update_server_channel_halted{channel}`.
    pub channel_halted: IntGaugeVec,
    /// `update_server_rollout_wave{channel}`: the rollout plan's current wave (from 1); 0 when
    /// the channel has no plan.
    pub rollout_wave: IntGaugeVec,
    /// `update_server_rollout_next_step_timestamp_seconds{channel}`: when the plan opens its
    /// next wave (Unix seconds), present only while that time is known (the wave has settled
    /// and soaks).
    pub rollout_next_step: GaugeVec,
    /// `update_server_channel_statement_expiry_timestamp_seconds{channel}`.
    pub channel_statement_expiry: GaugeVec,
    /// `update_server_channel_release_info{channel,version}`: 1 for the version a channel offers.
    pub channel_release: IntGaugeVec,
    /// `update_server_channel_changes_total{channel,action}`: signed channel changes by kind
    /// (`promote`, `halt`, `resume`, `rollback`, `auto_halt`, `resign`), the dashboard's
    /// promote/halt annotations (the serial also grows on re-signs, so it cannot tell them).
    pub channel_changes: IntCounterVec,
    /// `update_server_store_operation_duration_seconds`: each store operation (one call into
    /// SQLite or PostgreSQL, one transaction) and how long it took, failed ones included; its
    /// `_count` over the `/latest` requests is the database work per poll.
    pub store_operations: Histogram,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let metrics = Metrics {
            http_requests: register_int_counter_vec_with_registry!(
                "update_server_http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
                registry
            )
            .expect("metric registered once"),
            http_duration: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "update_server_http_request_duration_seconds",
                    "HTTP request latency by route"
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    10.0, 30.0, 60.0
                ]),
                &["route"],
                registry
            )
            .expect("metric registered once"),
            fleet_workers: register_int_gauge_vec_with_registry!(
                "update_server_fleet_workers",
                "Workers seen recently, by version and channel",
                &["version", "channel"],
                registry
            )
            .expect("metric registered once"),
            fleet_workers_stale: register_int_gauge_vec_with_registry!(
                "update_server_fleet_workers_stale",
                "Known workers not seen within the stale window",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            update_reports: register_int_counter_vec_with_registry!(
                "update_server_update_reports_total",
                "Update attempts reported by agents",
                &["outcome", "reason", "version"],
                registry
            )
            .expect("metric registered once"),
            channel_serial: register_int_gauge_vec_with_registry!(
                "update_server_channel_serial",
                "Serial of the channel statement served",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_rollout_ratio: register_gauge_vec_with_registry!(
                "update_server_channel_rollout_ratio",
                "Share of the channel's workers offered its release (0..1)",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_halted: register_int_gauge_vec_with_registry!(
                "update_server_channel_halted",
                "1 when the channel is halted",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            rollout_wave: register_int_gauge_vec_with_registry!(
                "update_server_rollout_wave",
                "Current wave of the channel's rollout plan (from 1; 0 without a plan)",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            rollout_next_step: register_gauge_vec_with_registry!(
                "update_server_rollout_next_step_timestamp_seconds",
                "When the rollout plan opens its next wave (Unix seconds), once the current wave has settled",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_statement_expiry: register_gauge_vec_with_registry!(
                "update_server_channel_statement_expiry_timestamp_seconds",
                "Expiry of the channel statement served (Unix seconds)",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_release: register_int_gauge_vec_with_registry!(
                "update_server_channel_release_info",
                "1 for the version each channel offers",
                &["channel", "version"],
                registry
            )
            .expect("metric registered once"),
            channel_changes: register_int_counter_vec_with_registry!(
                "update_server_channel_changes_total",
                "Signed channel changes by action (promote, halt, resume, rollback, auto_halt, resign)",
                &["channel", "action"],
                registry
            )
            .expect("metric registered once"),
            store_operations: register_histogram_with_registry!(
                HistogramOpts::new(
                    "update_server_store_operation_duration_seconds",
                    "Store operations (one database transaction each) and their latency"
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0, 5.0
                ]),
                registry
            )
            .expect("metric registered once"),
            registry,
        };
        // Registered here and not kept: its one series never changes.
        register_int_gauge_vec_with_registry!(
            "update_server_build_info",
            "1, labelled with the server's build",
            &["version", "commit", "target"],
            metrics.registry
        )
        .expect("metric registered once")
        .with_label_values(&[
            env!("BUILD_VERSION"),
            env!("BUILD_COMMIT"),
            env!("BUILD_TARGET"),
        ])
        .set(1);
        metrics
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "encoding metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Metrics;

    #[test]
    fn every_metric_is_in_the_namespace_and_the_build_is_exported() {
        let m = Metrics::new();
        m.http_requests.with_label_values(&["/x", "200"]).inc();
        m.http_duration.with_label_values(&["/x"]).observe(0.1);
        m.fleet_workers
            .with_label_values(&["1.0.0", "stable"])
            .set(1);
        m.fleet_workers_stale.with_label_values(&["stable"]).set(0);
        m.update_reports
            .with_label_values(&["success", "", "1.0.0"])
            .inc();
        m.channel_serial.with_label_values(&["stable"]).set(1);
        m.channel_rollout_ratio
            .with_label_values(&["stable"])
            .set(0.25);
        m.channel_halted.with_label_values(&["stable"]).set(0);
        m.rollout_wave.with_label_values(&["stable"]).set(2);
        m.rollout_next_step.with_label_values(&["stable"]).set(1.0);
        m.channel_statement_expiry
            .with_label_values(&["stable"])
            .set(1.0);
        m.channel_release
            .with_label_values(&["stable", "1.0.0"])
            .set(1);
        m.channel_changes
            .with_label_values(&["stable", "promote"])
            .inc();
        m.store_operations.observe(0.001);
        let text = m.render();
        let names: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(names.len(), 15, "{text}");
        assert!(
            names.iter().all(|n| n.starts_with("update_server_")),
            "{names:?}"
        );
        let build = format!(
            "update_server_build_info{{commit=\"{}\",target=\"{}\",version=\"{}\"}} 1",
            env!("BUILD_COMMIT"),
            env!("BUILD_TARGET"),
            env!("BUILD_VERSION")
        );
        assert!(text.contains(&build), "{build} missing:\n{text}");
        assert!(
            text.contains("update_server_channel_rollout_ratio{channel=\"stable\"} 0.25"),
            "{text}"
        );
    }
}
