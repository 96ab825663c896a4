//! Prometheus metrics of the server (names are a contract with dashboards and alert rules).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric.expect("metric definition is valid");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("metric registered once");
                metric
            }};
        }
        Metrics {
            http_requests: register!(IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests by route and status"),
                &["route", "status"]
            )),
            http_duration: register!(HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "HTTP request latency by route"
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    10.0, 30.0, 60.0
                ]),
                &["route"]
            )),
            fleet_workers: register!(IntGaugeVec::new(
                Opts::new(
                    "fleet_workers",
                    "Workers seen recently, by version and channel"
                ),
                &["version", "channel"]
            )),
            fleet_workers_stale: register!(IntGaugeVec::new(
                Opts::new(
                    "fleet_workers_stale",
                    "Known workers not seen within the stale window"
                ),
                &["channel"]
            )),
            update_reports: register!(IntCounterVec::new(
                Opts::new("update_reports_total", "Update attempts reported by agents"),
                &["outcome", "reason", "version"]
            )),
            channel_serial: register!(IntGaugeVec::new(
                Opts::new("channel_serial", "Serial of the channel statement served"),
                &["channel"]
            )),
            channel_rollout_percent: register!(IntGaugeVec::new(
                Opts::new(
                    "channel_rollout_percent",
                    "Rollout percentage of the channel's release"
                ),
                &["channel"]
            )),
            channel_halted: register!(IntGaugeVec::new(
                Opts::new("channel_halted", "1 when the channel is halted"),
                &["channel"]
            )),
            channel_statement_expiry: register!(GaugeVec::new(
                Opts::new(
                    "channel_statement_expiry_timestamp_seconds",
                    "Expiry of the channel statement served (Unix seconds)"
                ),
                &["channel"]
            )),
            channel_release: register!(IntGaugeVec::new(
                Opts::new(
                    "channel_release_info",
                    "1 for the version each channel offers"
                ),
                &["channel", "version"]
            )),
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
