//! Channels: their served views and `/latest` bodies, the signed statement changes (promote,
//! halt, resume, rollback, re-sign), the stable soak gate and auto-halt.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use manifests::{
    ChannelStatement, DocType, Release, ReleasePointer, RoleName, Rollback, Rollout, Signed,
    Version,
};
use sha2::{Digest, Sha256};

use super::waves::{RolloutPlan, Share, DEFAULT_FIRST_WAVE, DEFAULT_MAX_IN_FLIGHT};
use super::{now, parse_version, read_lock, write_lock, App};
use crate::api::{ChannelSummary, PromoteRequest};
use crate::error::{Error, Result};
use crate::store::{AuditRecord, ChannelRecord, ChannelWrite, OutcomeQuery};

/// A `/latest` response, serialised once.
#[derive(Debug, Clone)]
pub struct CachedBody {
    /// The JSON.
    pub body: Bytes,
    /// Its quoted ETag.
    pub etag: String,
}

impl CachedBody {
    /// `value` serialised, with its ETag.
    pub(super) fn new(value: &serde_json::Value) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let digest = Sha256::digest(&body);
        CachedBody {
            etag: format!("\"{}\"", hex::encode(&digest[..16])),
            body,
        }
    }
}

/// A channel as served.
#[derive(Debug)]
pub struct ChannelView {
    /// The current statement.
    pub statement: Signed<ChannelStatement>,
    /// The release it points to.
    pub release: Signed<Release>,
    /// The rollback directive attached, if any.
    pub rollback: Option<Signed<Rollback>>,
    /// Why it is halted.
    pub halt_reason: String,
    /// The channel's rollout plan and its progress, when it rolls out in waves.
    pub plan: Option<RolloutPlan>,
    /// The `/latest` body without the rollback directive.
    plain: CachedBody,
    /// The `/latest` body with it, for agents on one of its `from` versions.
    with_rollback: Option<CachedBody>,
}

impl App {
    /// The `/latest` body for a worker on `channel` running `current_version`.
    pub fn latest_body(&self, channel: &str, current_version: &Version) -> CachedBody {
        if let Some(view) = read_lock(&self.views).get(channel) {
            if let (Some(with_rollback), Some(rollback)) = (&view.with_rollback, &view.rollback) {
                if rollback.signed.from.contains(current_version) {
                    return with_rollback.clone();
                }
            }
            return view.plain.clone();
        }
        read_lock(&self.trust).empty.clone()
    }

    /// Halts `channel` when the release it offers, `version`, failed on too many workers:
    /// `--auto-halt-failures` distinct workers, or `--auto-halt-ratio` of those that tried once
    /// `--auto-halt-min-tried` tried (only release defects count: `manifests::FailureReason::RELEASE_DEFECTS`).
    pub(super) async fn consider_auto_halt(&self, channel: &str, version: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        // Another replica may have halted it already: auto-halt happens once.
        self.reread_channel_locked(channel).await;
        let offering = read_lock(&self.views)
            .get(channel)
            .filter(|view| {
                !view.statement.signed.halted && view.release.signed.version.to_string() == version
            })
            .is_some();
        if !offering {
            return Ok(());
        }
        let (channel_owned, version_owned) = (channel.to_owned(), version.to_owned());
        let counts = self
            .db(move |store| {
                store.release_outcomes(OutcomeQuery {
                    channel: &channel_owned,
                    version: &version_owned,
                    defects: &super::release_defect_labels(),
                })
            })
            .await?;
        let ratio = if counts.tried == 0 {
            0.0
        } else {
            counts.failed as f64 / counts.tried as f64
        };
        let by_count = counts.failed >= self.config.auto_halt_failures;
        let by_ratio =
            counts.tried >= self.config.auto_halt_min_tried && ratio >= self.config.auto_halt_ratio;
        if !(by_count || by_ratio) {
            return Ok(());
        }
        let reason = format!(
            "auto-halt: {} of {} workers that tried {version} on {channel} failed or rolled back (thresholds: {} workers, or {:.0}% once {} tried)",
            counts.failed,
            counts.tried,
            self.config.auto_halt_failures,
            self.config.auto_halt_ratio * 100.0,
            self.config.auto_halt_min_tried
        );
        tracing::warn!(%channel, %version, failed = counts.failed, tried = counts.tried, "{reason}");
        // The admin lock is already held (the check and the halt are one step).
        self.change_channel_locked(
            channel,
            "auto_halt",
            "auto-halt",
            &reason,
            None,
            |current| {
                Ok(ChannelChange {
                    halted: Some(true),
                    halt_reason: Some(reason.clone()),
                    ..ChannelChange::from(current)
                })
            },
        )
        .await?;
        Ok(())
    }

    /// Offers `request.version` on `channel`.
    pub async fn promote(
        &self,
        channel: &str,
        request: PromoteRequest,
        actor: &str,
    ) -> Result<ChannelSummary> {
        self.require_channel(channel)?;
        // On stable a promotion reaches the fleet: the share must be said, never defaulted.
        let percent = match request.percent {
            Some(percent) => percent,
            None if channel == "stable" => {
                return Err(Error::PercentRequired {
                    channel: channel.to_owned(),
                    version: request.version,
                })
            }
            None => 100,
        };
        if percent > 100 {
            return Err(Error::PercentAbove100 {
                channel: channel.to_owned(),
                percent,
            });
        }
        if request.override_gate && request.reason.trim().is_empty() {
            return Err(Error::OverrideWithoutReason {
                channel: channel.to_owned(),
                version: request.version,
            });
        }
        let version = parse_version("version", &request.version)?;
        let release = self.release_to_offer(&version).await?;
        let max_in_flight = match &request.max_in_flight {
            Some(text) => Some(Share::parse(text).map_err(|detail| Error::InvalidPlan {
                channel: channel.to_owned(),
                detail: format!("--max-in-flight {detail}"),
            })?),
            None => None,
        };
        let _admin = self.admin.lock().await;
        if channel == "stable" {
            if request.override_gate {
                tracing::warn!(%channel, %version, %actor, reason = %request.reason, "promotion gate overridden");
            } else {
                self.check_stable_gate(&version).await?;
            }
        }
        let minimum = match &request.minimum_version {
            Some(text) => Some(parse_version("minimum_version", text)?),
            None => None,
        };
        let detail = format!(
            "{version} at {percent}%{}{}",
            if request.override_gate {
                " (gate overridden)"
            } else {
                ""
            },
            if request.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", request.reason)
            }
        );
        let urgent = request.urgent;
        // A promote opens to a first wave of named workers, then to the share asked, as fast
        // as `--max-in-flight` and the first wave's probations allow (`state::waves`).
        let current = read_lock(&self.views)
            .get(channel)
            .filter(|view| view.release.signed.version == version)
            .cloned();
        let plan = match &current {
            // The same release widened (or narrowed): a plan under way keeps its waves and
            // named workers and ends on the new share; otherwise the share applies at once,
            // bounded by `--max-in-flight` when one is given.
            Some(view) => super::waves::widened_plan(view, percent, max_in_flight),
            None => {
                self.first_wave_plan(
                    channel,
                    &version,
                    percent,
                    request.first_wave.unwrap_or(DEFAULT_FIRST_WAVE),
                    max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
                )
                .await?
            }
        };
        let (percent_now, plan) = match plan {
            Some(plan) => {
                let salt = self.salt_for(channel, &version);
                let from = current
                    .as_ref()
                    .map_or(0, |view| view.statement.signed.rollout.percent.min(percent));
                let progress = self
                    .plan_progress(channel, &plan, from, &salt, None)
                    .await?;
                self.tracker.set(channel, super::waves::tracked(&progress));
                (progress.percent, Some(progress.plan))
            }
            None => (percent, None),
        };
        let summary = self
            .change_channel_locked(
                channel,
                "promote",
                actor,
                &detail,
                Some(percent),
                |current| {
                    let same_release = current.is_some_and(|c| c.release.signed.version == version);
                    let base = ChannelChange::from(current);
                    Ok(ChannelChange {
                        release: Some(release.clone()),
                        percent: percent_now,
                        plan: plan.clone(),
                        salt: if same_release {
                            base.salt.clone()
                        } else {
                            format!("{channel}-{version}")
                        },
                        minimum_version: minimum.clone().unwrap_or(base.minimum_version.clone()),
                        halted: Some(false),
                        halt_reason: Some(String::new()),
                        urgent,
                        rollback: None,
                        ..base
                    })
                },
            )
            .await?;
        Ok(summary)
    }

    pub(super) async fn check_stable_gate(&self, version: &Version) -> Result<()> {
        let version_text = version.to_string();
        let (v1, v2) = (version_text.clone(), version_text.clone());
        let first = self
            .db(move |store| store.first_promotion("canary", &v1))
            .await?;
        let Some(first) = first else {
            return Err(Error::NeverOnCanary {
                version: version.clone(),
            });
        };
        let soaked = u64::try_from(now().unix() - first).unwrap_or(0);
        let soak = self.config.soak.as_secs();
        if soaked < soak {
            return Err(Error::SoakTooShort {
                version: version.clone(),
                soaked,
                soak,
            });
        }
        let counts = self
            .db(move |store| {
                store.release_outcomes(OutcomeQuery {
                    channel: "canary",
                    version: &v2,
                    defects: &super::release_defect_labels(),
                })
            })
            .await?;
        if counts.succeeded == 0 {
            return Err(Error::NoCanarySuccess {
                version: version.clone(),
            });
        }
        let rate = counts.failed as f64 / counts.tried.max(1) as f64;
        if rate > self.config.promote_max_failure_rate {
            return Err(Error::CanaryFailureRate {
                version: version.clone(),
                failed: counts.failed,
                tried: counts.tried,
                rate,
                max_rate: self.config.promote_max_failure_rate,
            });
        }
        Ok(())
    }

    /// Halts a channel: no worker is offered an update until it is resumed.
    pub async fn halt(&self, channel: &str, reason: &str, actor: &str) -> Result<ChannelSummary> {
        if reason.trim().is_empty() {
            return Err(Error::HaltWithoutReason {
                channel: channel.to_owned(),
            });
        }
        let reason = reason.to_owned();
        self.change_channel(channel, "halt", actor, &reason.clone(), move |current| {
            current.ok_or_else(|| Error::NothingToChange {
                channel: channel.to_owned(),
                action: "halt",
            })?;
            Ok(ChannelChange {
                halted: Some(true),
                halt_reason: Some(reason.clone()),
                ..ChannelChange::from(current)
            })
        })
        .await
    }

    /// Resumes a halted channel.
    pub async fn resume(&self, channel: &str, reason: &str, actor: &str) -> Result<ChannelSummary> {
        if reason.trim().is_empty() {
            return Err(Error::ResumeWithoutReason {
                channel: channel.to_owned(),
            });
        }
        self.change_channel(channel, "resume", actor, reason, |current| {
            let view = current.ok_or_else(|| Error::NothingToChange {
                channel: channel.to_owned(),
                action: "resume",
            })?;
            if !view.statement.signed.halted {
                return Err(Error::NotHalted {
                    channel: channel.to_owned(),
                });
            }
            Ok(ChannelChange {
                halted: Some(false),
                halt_reason: Some(String::new()),
                ..ChannelChange::from(current)
            })
        })
        .await
    }

    /// Points a channel at a lower release, with the signed directive that lets agents go down.
    pub async fn rollback(
        &self,
        channel: &str,
        directive: serde_json::Value,
        reason: &str,
        actor: &str,
    ) -> Result<ChannelSummary> {
        let bytes = serde_json::to_vec(&directive).map_err(|source| Error::InvalidDirective {
            channel: channel.to_owned(),
            source,
        })?;
        let doc = Signed::<Rollback>::from_slice(&bytes)?;
        {
            let trust = read_lock(&self.trust);
            trust.current.verify_signed(RoleName::Release, &doc)?;
        }
        let now_ts = now();
        if doc.signed.expires <= now_ts {
            return Err(manifests::Error::Expired {
                doc: "rollback",
                expires: doc.signed.expires,
                now: now_ts,
            }
            .into());
        }
        if doc.signed.product != manifests::PRODUCT {
            return Err(manifests::Error::WrongProduct {
                expected: manifests::PRODUCT.to_owned(),
                offered: doc.signed.product.clone(),
            }
            .into());
        }
        let release = self.release_to_offer(&doc.signed.to).await?;
        let detail = format!(
            "to {} for agents on {}{}",
            doc.signed.to,
            doc.signed
                .from
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if reason.is_empty() {
                format!(": {}", doc.signed.reason)
            } else {
                format!(": {reason}")
            }
        );
        let _admin = self.admin.lock().await;
        self.change_channel_locked(channel, "rollback", actor, &detail, Some(100), |current| {
            let base = ChannelChange::from(current);
            Ok(ChannelChange {
                release: Some(release.clone()),
                percent: 100,
                salt: format!("{channel}-rollback-{}", doc.signed.to),
                halted: Some(false),
                halt_reason: Some(String::new()),
                urgent: true,
                rollback: Some(doc.clone()),
                plan: None,
                ..base
            })
        })
        .await
    }

    /// Re-signs every statement that expires within the configured margin.
    pub async fn resign_due(&self) {
        let margin = i64::try_from(self.config.resign_margin().as_secs()).unwrap_or(i64::MAX);
        let due: Vec<String> = read_lock(&self.views)
            .iter()
            .filter(|(_, v)| v.statement.signed.expires.unix() - now().unix() <= margin)
            .map(|(name, _)| name.clone())
            .collect();
        for channel in due {
            // Every replica finds the same statements due: the first to hold the admin lock
            // re-signs, the others find the statement re-signed once they hold it.
            let _admin = self.admin.lock().await;
            self.reread_channel_locked(&channel).await;
            let still_due = read_lock(&self.views)
                .get(&channel)
                .is_some_and(|v| v.statement.signed.expires.unix() - now().unix() <= margin);
            if !still_due {
                tracing::debug!(%channel, "statement already re-signed (by another replica)");
                continue;
            }
            let result = self
                .change_channel_locked(
                    &channel,
                    "resign",
                    "server",
                    "statement refreshed before expiry",
                    None,
                    |current| Ok(ChannelChange::from(current)),
                )
                .await;
            match result {
                Ok(summary) => {
                    tracing::info!(%channel, serial = summary.serial, expires = %summary.expires, "statement re-signed")
                }
                Err(error) => tracing::error!(%channel, %error, "re-signing failed"),
            }
        }
    }

    /// Takes the admin lock, then [`App::change_channel_locked`] without a promotion.
    async fn change_channel(
        &self,
        channel: &str,
        kind: &str,
        actor: &str,
        detail: &str,
        change: impl FnOnce(Option<&ChannelView>) -> Result<ChannelChange>,
    ) -> Result<ChannelSummary> {
        let _admin = self.admin.lock().await;
        self.change_channel_locked(channel, kind, actor, detail, None, change)
            .await
    }

    /// Signs the channel's next statement and makes it durable, then visible. The caller holds
    /// the admin lock.
    pub(super) async fn change_channel_locked(
        &self,
        channel: &str,
        kind: &str,
        actor: &str,
        detail: &str,
        promotion_percent: Option<u8>,
        change: impl FnOnce(Option<&ChannelView>) -> Result<ChannelChange>,
    ) -> Result<ChannelSummary> {
        self.require_channel(channel)?;
        // The change starts from the channel as stored, whichever replica changed it last.
        self.reread_channel_locked(channel).await;
        let current = read_lock(&self.views).get(channel).cloned();
        let next = change(current.as_deref())?;
        let name = channel.to_owned();
        let stored_serial = self.db(move |store| store.max_serial(&name)).await?;
        let signed = self.sign_change(channel, &next, stored_serial)?;
        let audit = AuditRecord {
            at: signed.statement.signed.issued_at.unix(),
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            channel: channel.to_owned(),
            version: signed.statement.signed.release.version.to_string(),
            detail: format!("serial {}: {detail}", signed.statement.signed.serial),
        };
        let serial = signed.statement.signed.serial;
        let version_text = audit.version.clone();
        let stored = signed.record.clone();
        self.db(move |store| {
            store.save_channel(ChannelWrite {
                record: &stored,
                serial,
                audit: &audit,
                promotion: promotion_percent.map(|p| (version_text.as_str(), p)),
            })
        })
        .await?;
        self.install_view(signed.record)?;
        self.metrics
            .channel_changes
            .with_label_values(&[channel, kind])
            .inc();
        self.notify();
        let view = read_lock(&self.views)
            .get(channel)
            .cloned()
            .ok_or_else(|| Error::ChannelVanished {
                channel: channel.to_owned(),
            })?;
        tracing::info!(%channel, %kind, %actor, serial, version = %view.release.signed.version, percent = view.statement.signed.rollout.percent, halted = view.statement.signed.halted, "channel statement signed");
        Ok(summary(self, channel, &view))
    }

    /// Signs `next` as `channel`'s next statement, one serial above both the highest the store
    /// ever recorded (`stored_serial`) and the current one: a server restarted on another key or
    /// root never reuses a serial. A release the current root does not accept is offered only
    /// by a halted statement.
    pub(super) fn sign_change(
        &self,
        channel: &str,
        next: &ChannelChange,
        stored_serial: Option<u64>,
    ) -> Result<SignedChange> {
        let release = next.release.clone().ok_or_else(|| Error::NoRelease {
            channel: channel.to_owned(),
        })?;
        let halted = next.halted.unwrap_or(false);
        if !halted {
            if let Some(detail) = self.release_untrusted(&release.signed.version) {
                return Err(Error::ReleaseUntrusted {
                    version: release.signed.version.clone(),
                    detail,
                });
            }
        }
        let issued = now();
        let ttl = i64::try_from(self.config.statement_ttl.as_secs()).unwrap_or(86_400);
        let statement = ChannelStatement {
            doc_type: DocType::Channel,
            channel: channel.to_owned(),
            serial: stored_serial.unwrap_or(0).max(next.serial) + 1,
            issued_at: issued,
            expires: issued.plus_secs(ttl),
            release: ReleasePointer {
                version: release.signed.version.clone(),
                manifest_sha256: release.signed_sha256()?,
                extra: BTreeMap::new(),
            },
            rollout: Rollout {
                percent: next.percent,
                salt: next.salt.clone(),
                wave: next.plan.as_ref().map(RolloutPlan::signed_wave),
                extra: BTreeMap::new(),
            },
            minimum_version: next.minimum_version.clone(),
            recommended_version: release.signed.version.clone(),
            halted,
            urgent: next.urgent,
            extra: BTreeMap::new(),
        };
        let signed = Signed::sign(statement, &[&self.channel_key])?;
        let record = ChannelRecord {
            channel: channel.to_owned(),
            statement: signed.to_json_pretty()?,
            rollback: match &next.rollback {
                Some(doc) => Some(doc.to_json_pretty()?),
                None => None,
            },
            halt_reason: next.halt_reason.clone().unwrap_or_default(),
            plan: next.plan.as_ref().map(RolloutPlan::to_json),
        };
        Ok(SignedChange {
            statement: signed,
            record,
        })
    }

    /// Parses and verifies a stored channel record, then serves it.
    pub(super) fn install_view(&self, record: ChannelRecord) -> Result<()> {
        let statement = Signed::<ChannelStatement>::from_slice(&record.statement)?;
        let (release, untrusted) = read_lock(&self.releases)
            .get(&statement.signed.release.version.to_string())
            .map(|r| (r.doc.clone(), r.untrusted.clone()))
            .ok_or_else(|| Error::StatementReleaseMissing {
                channel: record.channel.clone(),
                version: statement.signed.release.version.clone(),
            })?;
        if let (Some(detail), false) = (untrusted, statement.signed.halted) {
            return Err(Error::ReleaseUntrusted {
                version: statement.signed.release.version.clone(),
                detail,
            });
        }
        // Verified again, as if signed now: whoever can write the database must not get a
        // statement served, or re-signed with our key.
        read_lock(&self.trust)
            .current
            .verify_signed(RoleName::Channel, &statement)?;
        if statement.signed.channel != record.channel
            || release.signed_sha256()? != statement.signed.release.manifest_sha256
        {
            return Err(Error::StatementMismatch {
                channel: record.channel,
            });
        }
        let rollback = match &record.rollback {
            Some(bytes) => {
                let doc = Signed::<Rollback>::from_slice(bytes)?;
                read_lock(&self.trust)
                    .current
                    .verify_signed(RoleName::Release, &doc)?;
                Some(doc)
            }
            None => None,
        };
        let plan = record
            .plan
            .as_deref()
            .and_then(|text| RolloutPlan::from_json(&record.channel, text));
        let view = self.build_view(statement, release, rollback, record.halt_reason, plan);
        self.update_channel_metrics(&record.channel, &view);
        write_lock(&self.views).insert(record.channel, Arc::new(view));
        Ok(())
    }

    pub(super) fn build_view(
        &self,
        statement: Signed<ChannelStatement>,
        release: Signed<Release>,
        rollback: Option<Signed<Rollback>>,
        halt_reason: String,
        plan: Option<RolloutPlan>,
    ) -> ChannelView {
        let root_version = self.root_version();
        let poll = self.config.poll_interval.as_secs();
        let body = |with_rollback: bool| {
            CachedBody::new(&serde_json::json!({
                "root_version": root_version,
                "channel": statement,
                "release": release,
                "rollback": if with_rollback { serde_json::to_value(&rollback).unwrap_or_default() } else { serde_json::Value::Null },
                "poll_interval_s": poll,
            }))
        };
        ChannelView {
            plain: body(false),
            with_rollback: rollback.is_some().then(|| body(true)),
            statement,
            release,
            rollback,
            halt_reason,
            plan,
        }
    }

    /// Rebuilds every `/latest` body (after a root rotation: they carry the root version).
    pub(super) fn rebuild_views(&self) {
        let current: Vec<(String, Arc<ChannelView>)> = read_lock(&self.views)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, view) in current {
            let rebuilt = self.build_view(
                view.statement.clone(),
                view.release.clone(),
                view.rollback.clone(),
                view.halt_reason.clone(),
                view.plan.clone(),
            );
            write_lock(&self.views).insert(name, Arc::new(rebuilt));
        }
    }

    fn update_channel_metrics(&self, channel: &str, view: &ChannelView) {
        let stmt = &view.statement.signed;
        let m = &self.metrics;
        m.channel_serial
            .with_label_values(&[channel])
            .set(i64::try_from(stmt.serial).unwrap_or(i64::MAX));
        m.channel_rollout_ratio
            .with_label_values(&[channel])
            .set(f64::from(stmt.rollout.percent) / 100.0);
        m.channel_halted
            .with_label_values(&[channel])
            .set(i64::from(stmt.halted));
        #[allow(clippy::cast_precision_loss)]
        m.channel_statement_expiry
            .with_label_values(&[channel])
            .set(stmt.expires.unix() as f64);
        if let Some(previous) = read_lock(&self.views).get(channel) {
            let old = previous.release.signed.version.to_string();
            let _ = m.channel_release.remove_label_values(&[channel, &old]);
        }
        m.channel_release
            .with_label_values(&[channel, &stmt.release.version.to_string()])
            .set(1);
        let tracked = self.tracker.get(channel);
        self.update_wave_metrics(channel, view.plan.as_ref(), tracked.as_ref());
    }
}

/// A statement signed by [`App::sign_change`], with the record that stores it.
#[derive(Debug)]
pub(super) struct SignedChange {
    /// The statement.
    pub(super) statement: Signed<ChannelStatement>,
    /// The channel's state to store.
    pub(super) record: ChannelRecord,
}

/// What a channel change sets; `From<Option<&ChannelView>>` starts from the current state.
#[derive(Debug, Clone)]
pub(super) struct ChannelChange {
    /// The current serial (the next statement gets one more).
    pub(super) serial: u64,
    /// The release offered (`None`: nothing was ever promoted).
    pub(super) release: Option<Signed<Release>>,
    /// Rollout percentage.
    pub(super) percent: u8,
    /// Rollout salt (kept while the release stays, so the same workers stay in).
    pub(super) salt: String,
    /// Channel minimum version.
    pub(super) minimum_version: Version,
    /// Halted (`None`: never set).
    pub(super) halted: Option<bool>,
    /// Why it is halted.
    pub(super) halt_reason: Option<String>,
    /// Urgent flag.
    pub(super) urgent: bool,
    /// Rollback directive attached.
    pub(super) rollback: Option<Signed<Rollback>>,
    /// The rollout plan (`None`: the statement's share is the whole story).
    pub(super) plan: Option<RolloutPlan>,
}

impl From<Option<&ChannelView>> for ChannelChange {
    fn from(current: Option<&ChannelView>) -> Self {
        match current {
            Some(view) => ChannelChange {
                serial: view.statement.signed.serial,
                release: Some(view.release.clone()),
                percent: view.statement.signed.rollout.percent,
                salt: view.statement.signed.rollout.salt.clone(),
                minimum_version: view.statement.signed.minimum_version.clone(),
                halted: Some(view.statement.signed.halted),
                halt_reason: Some(view.halt_reason.clone()),
                urgent: view.statement.signed.urgent,
                rollback: view.rollback.clone(),
                plan: view.plan.clone(),
            },
            None => ChannelChange {
                serial: 0,
                release: None,
                percent: 0,
                salt: String::new(),
                minimum_version: Version::new(0, 0, 0),
                halted: None,
                halt_reason: None,
                urgent: false,
                rollback: None,
                plan: None,
            },
        }
    }
}

/// The admin API's summary of a served channel.
pub(super) fn summary(app: &App, channel: &str, view: &ChannelView) -> ChannelSummary {
    let stmt = &view.statement.signed;
    ChannelSummary {
        channel: channel.to_owned(),
        version: stmt.release.version.to_string(),
        percent: stmt.rollout.percent,
        halted: stmt.halted,
        halt_reason: view.halt_reason.clone(),
        serial: stmt.serial,
        issued_at: stmt.issued_at.to_string(),
        expires: stmt.expires.to_string(),
        minimum_version: stmt.minimum_version.to_string(),
        recommended_version: stmt.recommended_version.to_string(),
        urgent: stmt.urgent,
        rollback_to: view.rollback.as_ref().map(|r| r.signed.to.to_string()),
        wave: view
            .plan
            .as_ref()
            .map(|plan| app.wave_summary(channel, plan, stmt.halted)),
    }
}
