//! Prometheus metrics of the server (names are a contract with dashboards and alert rules).

use prometheus::{
    register_gauge_vec_with_registry, register_histogram_vec_with_registry,
    register_int_counter_vec_with_registry, register_int_gauge_vec_with_registry, Encoder,
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry, TextEncoder,
};

/// Every metric the server exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{route,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{route}`.
    pub http_duration: HistogramVec,
    /// `fleet_workers{version,channel}`: workers seen within the stale window.
    pub fleet_workers: IntGaugeVec,
    /// `fleet_workers_stale{channel}`: workers not seen within the stale window.
    pub fleet_workers_stale: IntGaugeVec,
    /// `update_reports_total{outcome,reason,version}`.
    pub update_reports: IntCounterVec,
    /// `channel_serial{channel}`.
    pub channel_serial: IntGaugeVec,
    /// `channel_rollout_percent{channel}`.
    pub channel_rollout_percent: IntGaugeVec,
    /// `channel_halted{channel}`.
    pub channel_halted: IntGaugeVec,
    /// `channel_statement_expiry_timestamp_seconds{channel}`.
    pub channel_statement_expiry: GaugeVec,
    /// `channel_release_info{channel,version}`: 1 for the version a channel offers.
    pub channel_release: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        Metrics {
            http_requests: register_int_counter_vec_with_registry!(
                "http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
                registry
            )
            .expect("metric registered once"),
            http_duration: register_histogram_vec_with_registry!(
                HistogramOpts::new(
                    "http_request_duration_seconds",
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
                "fleet_workers",
                "Workers seen recently, by version and channel",
                &["version", "channel"],
                registry
            )
            .expect("metric registered once"),
            fleet_workers_stale: register_int_gauge_vec_with_registry!(
                "fleet_workers_stale",
                "Known workers not seen within the stale window",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            update_reports: register_int_counter_vec_with_registry!(
                "update_reports_total",
                "Update attempts reported by agents",
                &["outcome", "reason", "version"],
                registry
            )
            .expect("metric registered once"),
            channel_serial: register_int_gauge_vec_with_registry!(
                "channel_serial",
                "Serial of the channel statement served",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_rollout_percent: register_int_gauge_vec_with_registry!(
                "channel_rollout_percent",
                "Rollout percentage of the channel's release",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_halted: register_int_gauge_vec_with_registry!(
                "channel_halted",
                "1 when the channel is halted",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_statement_expiry: register_gauge_vec_with_registry!(
                "channel_statement_expiry_timestamp_seconds",
                "Expiry of the channel statement served (Unix seconds)",
                &["channel"],
                registry
            )
            .expect("metric registered once"),
            channel_release: register_int_gauge_vec_with_registry!(
                "channel_release_info",
                "1 for the version each channel offers",
                &["channel", "version"],
                registry
            )
            .expect("metric registered once"),
            registry,
        }
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
