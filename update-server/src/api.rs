//! Request and response bodies of the API, shared by the handlers ([`crate::http`]) and the
//! domain code ([`crate::state`]).

use serde::{Deserialize, Serialize};

/// Channel summary, as returned by the admin API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ChannelSummary {
    /// Channel name.
    pub channel: String,
    /// Version offered.
    pub version: String,
    /// Rollout percentage.
    pub percent: u8,
    /// Halted?
    pub halted: bool,
    /// Why.
    pub halt_reason: String,
    /// Statement serial.
    pub serial: u64,
    /// Statement issue time.
    pub issued_at: String,
    /// Statement expiry.
    pub expires: String,
    /// Channel minimum version.
    pub minimum_version: String,
    /// Channel recommended version.
    pub recommended_version: String,
    /// Urgent flag.
    pub urgent: bool,
    /// The rollback directive's target, when one is attached.
    pub rollback_to: Option<String>,
    /// The rollout plan, when the channel rolls out in waves.
    #[serde(default)]
    pub wave: Option<WaveSummary>,
}

/// Where a channel's rollout plan stands (`worker-release status`, the console).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct WaveSummary {
    /// The current wave, from 1.
    pub number: usize,
    /// How many waves the plan has.
    pub of: usize,
    /// The current wave's step (`5`, `10%@3600s`).
    pub step: String,
    /// The whole plan as given (`5,10%@1h,50%@4h,100%@1d`).
    pub spec: String,
    /// `rolling` (admitting, or waiting for the wave's workers), `soaking`, `held` (failure
    /// share at or above `--auto-halt-ratio`), `waiting_for_window`, `halted` or `complete`.
    pub state: String,
    /// Workers named by the signed statement so far.
    pub named: usize,
    /// Admitted workers still updating (seen recently, not yet tried).
    pub in_flight: usize,
    /// The bound on `in_flight` (`20%`, `3`).
    pub max_in_flight: String,
    /// The maintenance window (`02:00-05:00 UTC`), when there is one.
    pub window: Option<String>,
    /// When the next wave opens (RFC 3339), once the current one has settled.
    pub next_step_at: Option<String>,
    /// Why it is not moving, when it is not.
    pub waiting: Option<String>,
}

/// Body of `POST /api/admin/channels/<channel>/plan`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// Version to roll out.
    pub version: String,
    /// The waves: named workers first (`5`: five workers by name), then shares of the channel,
    /// each with an optional soak (`10%@1h`): `5,10%@1h,50%@4h,100%@1d`.
    pub waves: String,
    /// Most workers updating at once: a number or a share of the channel (default `20%`).
    #[serde(default)]
    pub max_in_flight: Option<String>,
    /// Daily window (UTC, `HH:MM-HH:MM`) in which waves open and workers are admitted.
    #[serde(default)]
    pub window: Option<String>,
    /// Why (audit).
    #[serde(default)]
    pub reason: String,
    /// Skip the stable soak gate (requires a reason).
    #[serde(default, rename = "override")]
    pub override_gate: bool,
    /// Mark the update urgent.
    #[serde(default)]
    pub urgent: bool,
}

/// Body of `POST /api/admin/channels/<channel>/promote`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Version to offer.
    pub version: String,
    /// Rollout percentage (default 100, except on `stable`, where it must be given: a promotion
    /// there reaches the fleet).
    #[serde(default)]
    pub percent: Option<u8>,
    /// Why (audit).
    #[serde(default)]
    pub reason: String,
    /// Skip the stable soak gate (requires a reason).
    #[serde(default, rename = "override")]
    pub override_gate: bool,
    /// New channel minimum version (default: keep).
    #[serde(default)]
    pub minimum_version: Option<String>,
    /// Mark the update urgent.
    #[serde(default)]
    pub urgent: bool,
    /// Workers named in the first wave (default 5; 0: the whole share at once). A channel
    /// whose cohort has no more known workers than this gets the share at once.
    #[serde(default)]
    pub first_wave: Option<u32>,
    /// Most workers updating at once after the first wave: a number or a share (default `20%`).
    #[serde(default)]
    pub max_in_flight: Option<String>,
}

/// Body of `POST /api/workers/register`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    /// Stable worker id.
    pub worker_id: String,
    /// Running version.
    pub current_version: String,
    /// Target triple.
    pub platform: String,
    /// Channel followed.
    pub channel: String,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Task types served.
    #[serde(default)]
    pub task_types: Vec<String>,
}

/// Body of `POST /api/worker-updates/report`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ReportRequest {
    /// Reporting worker.
    pub worker_id: String,
    /// Correlation id of the attempt.
    pub correlation_id: String,
    /// Version before.
    pub from_version: String,
    /// Version attempted.
    pub to_version: String,
    /// `success`, `failure`, `rolled_back`, `deferred`.
    pub outcome: String,
    /// Reason label.
    #[serde(default)]
    pub reason: String,
    /// Duration of the attempt.
    #[serde(default)]
    pub duration_ms: u64,
    /// When (RFC 3339 UTC seconds).
    pub at: String,
    /// Channel (default: the worker's registered channel).
    #[serde(default)]
    pub channel: Option<String>,
}

/// Answer to publishing a release.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRelease {
    /// Stored now (false when the identical document was already stored).
    pub newly_stored: bool,
    /// `{"version", "manifest_sha256", "missing_artifacts"}`.
    pub body: serde_json::Value,
}

/// Body of `POST /api/admin/channels`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    /// The new channel's name (1-64 of `[a-z0-9_-]`).
    pub name: String,
}

/// A created channel, as `GET /api/admin/channels` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ChannelListing {
    /// Channel name.
    pub channel: String,
    /// Version offered, when something was promoted on it.
    pub version: Option<String>,
    /// Workers of the inventory that follow it.
    pub workers: usize,
}
