//! Rollout plans: a channel's release opens to its workers wave by wave.
//!
//! A plan is a list of steps, `5,10%@1h,50%@4h,100%@1d`: a number of workers named in the
//! signed statement, or a share of the cohort, each held for a soak time once it has settled.
//! Every promote starts with one (`--first-wave`, default 5) unless the channel's target cohort
//! has no more known workers than that. The server advances it by itself ([`App::advance_waves`],
//! every second): it admits workers while fewer than `--max-in-flight` are updating, opens the
//! next step once everyone admitted has tried (succeeded, or failed with a release defect) or
//! went silent, and the soak has passed; it holds while the failure share is at or above
//! `--auto-halt-ratio` and stops when the channel halts. What a worker may do is only ever said
//! by the signed statement (`rollout.percent` and `rollout.wave`); the plan and its progress are
//! stored in the channel's row with it ([`crate::store::ChannelRecord::plan`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use manifests::{Wave, MAX_WAVE_WORKERS};
use serde::{Deserialize, Serialize};

use super::channels::ChannelChange;
use super::fleet::INVENTORY_WRITE_INTERVAL_SECS;
use super::{now, parse_version, read_lock, App};
use crate::api::{ChannelSummary, PlanRequest, WaveSummary};
use crate::error::{Error, Result};
use crate::store::OutcomeQuery;

/// The most steps a plan may have.
const MAX_STEPS: usize = 20;

/// How long after its wave opened a worker that runs the release without a counted report
/// stops counting as in flight (its probation took far longer than any agent's, or it updated
/// from a mirror as an enrolled worker whose report does not count).
pub const PROBATION_GRACE_SECS: i64 = 600;

/// Least age of the statement before the plan signs another one only to admit more workers of
/// the same wave (each signature wakes the channel's whole fleet).
pub const ADMIT_INTERVAL_SECS: i64 = 3;

/// Every promote's first wave, unless `--first-wave` says otherwise (0: no waves).
pub const DEFAULT_FIRST_WAVE: u32 = 5;

/// The default bound on workers updating at once.
pub const DEFAULT_MAX_IN_FLIGHT: Share = Share::Percent(20);

/// A size: a number of workers, or a share of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Share {
    /// This many workers.
    Workers(u32),
    /// This percentage (1 to 100).
    Percent(u8),
}

impl Share {
    /// Parses `5` or `10%`.
    pub fn parse(text: &str) -> std::result::Result<Share, String> {
        let text = text.trim();
        if let Some(number) = text.strip_suffix('%') {
            return match number.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Share::Percent(p)),
                _ => Err(format!("`{text}`: a percentage is 1% to 100%")),
            };
        }
        match text.parse::<u32>() {
            Ok(0) => Err(format!("`{text}`: a wave has at least 1 worker")),
            Ok(n) => Ok(Share::Workers(n)),
            Err(_) => Err(format!(
                "`{text}`: a number of workers (5) or a percentage (10%)"
            )),
        }
    }

    /// How many of `channel_size` workers this is: a percentage rounds up; at least 1.
    pub fn of(self, channel_size: usize) -> usize {
        match self {
            Share::Workers(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Share::Percent(p) => (channel_size * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Workers(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Workers named so far (cumulative), or the cohort share opened.
    pub share: Share,
    /// How long the step must hold, settled and healthy, before the next opens.
    pub soak_secs: u64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.share)?;
        if self.soak_secs > 0 {
            write!(f, "@{}s", self.soak_secs)?;
        }
        Ok(())
    }
}

/// Parses `5,10%@1h,50%@4h,100%@1d`. Named waves come first and grow; cohort shares grow.
pub fn parse_steps(spec: &str) -> std::result::Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let (share, soak) = match part.split_once('@') {
            Some((share, soak)) => (
                share,
                config_syntax::parse_secs(soak.trim()).map_err(|e| format!("`{part}`: {e}"))?,
            ),
            None => (part, 0),
        };
        steps.push(Step {
            share: Share::parse(share)?,
            soak_secs: soak,
        });
    }
    if steps.len() > MAX_STEPS {
        return Err(format!("at most {MAX_STEPS} waves"));
    }
    let mut previous: Option<Share> = None;
    for step in &steps {
        match (previous, step.share) {
            (_, Share::Workers(n))
                if usize::try_from(n).unwrap_or(usize::MAX) > MAX_WAVE_WORKERS =>
            {
                return Err(format!(
                    "`{n}`: a named wave has at most {MAX_WAVE_WORKERS} workers; use a percentage"
                ))
            }
            (Some(Share::Percent(_)), Share::Workers(_)) => {
                return Err("named waves (a number of workers) come before percentages".to_owned())
            }
            (Some(Share::Workers(a)), Share::Workers(b)) if b <= a => {
                return Err(format!(
                    "`{b}` after `{a}`: waves grow (numbers are totals so far)"
                ))
            }
            (Some(Share::Percent(a)), Share::Percent(b)) if b <= a => {
                return Err(format!("`{b}%` after `{a}%`: waves grow"))
            }
            _ => {}
        }
        previous = Some(step.share);
    }
    Ok(steps)
}

/// A daily maintenance window (UTC): waves open and workers are admitted only inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Minute of the day it opens.
    pub start_minute: u16,
    /// Minute of the day it closes (before `start_minute`: across midnight).
    pub end_minute: u16,
}

impl Window {
    /// Parses `02:00-05:00` (UTC).
    pub fn parse(text: &str) -> std::result::Result<Window, String> {
        let minute = |hhmm: &str| -> Option<u16> {
            let (h, m) = hhmm.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && hhmm.trim().len() == 5).then_some(h * 60 + m)
        };
        let bad = || format!("`{text}`: a window is HH:MM-HH:MM (UTC), e.g. 02:00-05:00");
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let (start_minute, end_minute) =
            (minute(start).ok_or_else(bad)?, minute(end).ok_or_else(bad)?);
        if start_minute == end_minute {
            return Err(format!("`{text}`: the window is empty"));
        }
        Ok(Window {
            start_minute,
            end_minute,
        })
    }

    /// Whether `unix` (seconds) falls inside.
    pub fn contains(self, unix: i64) -> bool {
        let minute = u16::try_from(unix.rem_euclid(86_400) / 60).unwrap_or(0);
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }

    /// The first instant at or after `unix` inside the window.
    pub fn next_open(self, unix: i64) -> i64 {
        if self.contains(unix) {
            return unix;
        }
        let day = unix - unix.rem_euclid(86_400);
        let start = day + i64::from(self.start_minute) * 60;
        if start > unix {
            start
        } else {
            start + 86_400
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

/// A channel's plan and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutPlan {
    /// The release it rolls out.
    pub version: String,
    /// The steps as the operator wrote them (`5,10%@1h,...`).
    pub spec: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// Most workers admitted but not done at once.
    pub max_in_flight: Share,
    /// When waves may open.
    #[serde(default)]
    pub window: Option<Window>,
    /// Index of the current step.
    pub wave: usize,
    /// Workers named so far (sorted), offered the release by the statement's `rollout.wave`.
    #[serde(default)]
    pub named: Vec<String>,
    /// When the current step opened (Unix seconds).
    pub opened_at: i64,
    /// The last step settled and soaked: nothing more to do.
    #[serde(default)]
    pub complete: bool,
}

impl RolloutPlan {
    /// The cohort share the plan ends on (0 when it ends on named workers).
    pub fn final_percent(&self) -> u8 {
        match self.steps.last().map(|s| s.share) {
            Some(Share::Percent(p)) => p,
            _ => 0,
        }
    }

    /// What the signed statement says of the plan.
    pub fn signed_wave(&self) -> Wave {
        Wave {
            number: u32::try_from(self.wave + 1).unwrap_or(u32::MAX),
            of: u32::try_from(self.steps.len()).unwrap_or(u32::MAX),
            workers: self.named.clone(),
            extra: Default::default(),
        }
    }

    /// Stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the stored form; a plan this build cannot read is dropped with a warning (the
    /// statement still says who may update, and stays as it is).
    pub fn from_json(channel: &str, text: &str) -> Option<RolloutPlan> {
        serde_json::from_str(text)
            .map_err(|error| tracing::warn!(%channel, %error, "stored rollout plan unreadable; the channel stays where its statement is"))
            .ok()
    }
}

/// A worker of the channel as last seen, by this replica or (replicas) by any.
#[derive(Debug, Clone)]
struct Sighted {
    id: String,
    version: String,
    /// Unix seconds.
    last_seen: i64,
    /// From the store (another replica's sighting), not this replica's memory.
    stored: bool,
}

/// A worker of the channel, as the plan sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Worker id.
    pub id: String,
    /// Its cohort bucket for the release's salt (0 to 99).
    pub bucket: u64,
    /// Seen recently enough to count as updating when admitted.
    pub alive: bool,
    /// Reported trying the release (success, or a release defect): done with it.
    pub tried: bool,
    /// Runs the release: in probation until it reports (or [`PROBATION_GRACE_SECS`] after
    /// its wave opened, for a worker whose reports do not count).
    pub running: bool,
}

/// Where a plan stands after [`advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The plan, moved on.
    pub plan: RolloutPlan,
    /// The cohort share to sign.
    pub percent: u8,
    /// Admitted workers still updating.
    pub in_flight: usize,
    /// Since when the current step has been settled (fully admitted, nobody in flight).
    pub settled_since: Option<i64>,
    /// Why it is not moving, when it is not.
    pub waiting: Option<&'static str>,
}

/// Moves `plan` on as far as the fleet allows at `now`: admits workers while fewer than
/// `max_in_flight` are updating, and opens the next step once the current one settled and
/// soaked. `held`: the failures call for a look (no one more is admitted).
pub fn advance(
    plan: &RolloutPlan,
    percent: u8,
    members: &[Member],
    now: i64,
    settled_since: Option<i64>,
    held: bool,
) -> Progress {
    let mut plan = plan.clone();
    let mut percent = percent;
    let mut settled_since = settled_since;
    let max = plan.max_in_flight.of(members.len());
    let final_percent = plan.final_percent();
    let busy = |m: &Member, opened_at: i64| {
        m.alive && !m.tried && !(m.running && now >= opened_at.saturating_add(PROBATION_GRACE_SECS))
    };
    loop {
        let named: BTreeSet<&str> = plan.named.iter().map(String::as_str).collect();
        // Workers updating per cohort bucket (not named), and named ones.
        let mut by_bucket = [0usize; 100];
        let mut named_busy = 0;
        for m in members.iter().filter(|m| busy(m, plan.opened_at)) {
            if named.contains(m.id.as_str()) {
                named_busy += 1;
            } else {
                by_bucket[usize::try_from(m.bucket.min(99)).unwrap_or(99)] += 1;
            }
        }
        let in_flight_at =
            |p: u8| named_busy + by_bucket[..usize::from(p.min(100))].iter().sum::<usize>();
        let mut in_flight = in_flight_at(percent);
        let closed = plan.window.is_some_and(|w| !w.contains(now));
        let waiting = if held {
            Some("held: failure share at or above --auto-halt-ratio")
        } else if closed {
            Some("outside the maintenance window")
        } else {
            None
        };
        let step = plan.steps[plan.wave];
        let reached = match step.share {
            Share::Workers(n) => {
                let target = usize::try_from(n).unwrap_or(usize::MAX);
                let mut candidates: Vec<&Member> = members
                    .iter()
                    .filter(|m| {
                        busy(m, plan.opened_at) && !m.running && !named.contains(m.id.as_str())
                    })
                    .filter(|m| final_percent == 0 || m.bucket < u64::from(final_percent))
                    .filter(|m| m.bucket >= u64::from(percent))
                    .collect();
                candidates.sort_by(|a, b| (a.bucket, &a.id).cmp(&(b.bucket, &b.id)));
                let mut added = Vec::new();
                if waiting.is_none() {
                    for candidate in &candidates {
                        if plan.named.len() + added.len() >= target || in_flight >= max {
                            break;
                        }
                        added.push(candidate.id.clone());
                        in_flight += 1;
                    }
                }
                let exhausted = added.len() == candidates.len();
                plan.named.extend(added);
                plan.named.sort();
                plan.named.len() >= target || exhausted
            }
            Share::Percent(target) => {
                if waiting.is_none() {
                    while percent < target {
                        let next = in_flight_at(percent + 1);
                        if next > max && in_flight_at(percent) > 0 {
                            break;
                        }
                        percent += 1;
                    }
                    in_flight = in_flight_at(percent);
                }
                percent >= target
            }
        };
        if !reached || in_flight > 0 {
            return Progress {
                plan,
                percent,
                in_flight,
                settled_since: None,
                waiting: waiting.or(Some(if reached {
                    "wave in flight"
                } else {
                    "admitting within --max-in-flight"
                })),
            };
        }
        let since = *settled_since.get_or_insert(now);
        let soaked = now >= since.saturating_add(i64::try_from(step.soak_secs).unwrap_or(i64::MAX));
        if !soaked || waiting.is_some() {
            return Progress {
                plan,
                percent,
                in_flight,
                settled_since,
                waiting: waiting.or(Some("soaking")),
            };
        }
        if plan.wave + 1 == plan.steps.len() {
            plan.complete = true;
            return Progress {
                plan,
                percent,
                in_flight,
                settled_since,
                waiting: None,
            };
        }
        plan.wave += 1;
        plan.opened_at = now;
        settled_since = None;
    }
}

/// A plan's progress as last computed, per channel (memory only: after a restart the soak of a
/// settled wave starts again, which only ever waits longer).
#[derive(Debug, Default)]
pub struct Tracker {
    /// By channel.
    channels: std::sync::Mutex<HashMap<String, Tracked>>,
}

/// See [`Tracker`].
#[derive(Debug, Clone, Default)]
pub(super) struct Tracked {
    /// The step the figures are about.
    wave: usize,
    /// Since when it has been settled.
    settled_since: Option<i64>,
    /// Workers updating.
    in_flight: usize,
    /// Why it is not moving.
    waiting: Option<&'static str>,
}

impl Tracker {
    pub(super) fn get(&self, channel: &str) -> Option<Tracked> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(channel)
            .cloned()
    }

    pub(super) fn set(&self, channel: &str, tracked: Tracked) {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(channel.to_owned(), tracked);
    }
}

impl App {
    /// `worker-release rollout plan`: offers `request.version` on `channel` wave by wave.
    pub async fn plan_rollout(
        &self,
        channel: &str,
        request: PlanRequest,
        actor: &str,
    ) -> Result<ChannelSummary> {
        self.require_channel(channel)?;
        let invalid = |detail: String| Error::InvalidPlan {
            channel: channel.to_owned(),
            detail,
        };
        let steps = parse_steps(&request.waves).map_err(invalid)?;
        let max_in_flight = match &request.max_in_flight {
            Some(text) => {
                Share::parse(text).map_err(|e| invalid(format!("--max-in-flight {e}")))?
            }
            None => DEFAULT_MAX_IN_FLIGHT,
        };
        let window = match &request.window {
            Some(text) => Some(Window::parse(text).map_err(|e| invalid(format!("--window {e}")))?),
            None => None,
        };
        if request.override_gate && request.reason.trim().is_empty() {
            return Err(Error::OverrideWithoutReason {
                channel: channel.to_owned(),
                version: request.version,
            });
        }
        let version = parse_version("version", &request.version)?;
        let release = self.release_to_offer(&version).await?;
        let _admin = self.admin.lock().await;
        if channel == "stable" && !request.override_gate {
            self.check_stable_gate(&version).await?;
        }
        let plan = RolloutPlan {
            version: version.to_string(),
            spec: request.waves.trim().to_owned(),
            steps,
            max_in_flight,
            window,
            wave: 0,
            named: Vec::new(),
            opened_at: now().unix(),
            complete: false,
        };
        let salt = self.salt_for(channel, &version);
        let progress = self.plan_progress(channel, &plan, 0, &salt, None).await?;
        let detail = format!(
            "{version} in waves {}{}{}",
            plan.spec,
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
        let percent = progress.percent;
        self.tracker.set(channel, tracked(&progress));
        self.change_channel_locked(
            channel,
            "plan",
            actor,
            &detail,
            Some(plan.final_percent()),
            |current| {
                let base = ChannelChange::from(current);
                Ok(ChannelChange {
                    release: Some(release.clone()),
                    percent,
                    salt: salt.clone(),
                    halted: Some(false),
                    halt_reason: Some(String::new()),
                    urgent: request.urgent,
                    rollback: None,
                    plan: Some(progress.plan.clone()),
                    ..base
                })
            },
        )
        .await
    }

    /// The first wave of a promote to `percent`: `None` when the channel's cohort has no more
    /// known workers than the wave (all of them are the first wave) or `first_wave` is 0.
    pub(super) async fn first_wave_plan(
        &self,
        channel: &str,
        version: &manifests::Version,
        percent: u8,
        first_wave: u32,
        max_in_flight: Share,
    ) -> Result<Option<RolloutPlan>> {
        if first_wave == 0 || percent == 0 {
            return Ok(None);
        }
        let salt = self.salt_for(channel, version);
        let version_text = version.to_string();
        let cohort = self
            .channel_sightings(channel)
            .await?
            .iter()
            .filter(|seen| {
                seen.version != version_text && manifests::in_rollout(&seen.id, &salt, percent)
            })
            .count();
        if cohort <= usize::try_from(first_wave).unwrap_or(usize::MAX) {
            return Ok(None);
        }
        let steps = vec![
            Step {
                share: Share::Workers(
                    first_wave.min(u32::try_from(MAX_WAVE_WORKERS).unwrap_or(u32::MAX)),
                ),
                soak_secs: 0,
            },
            Step {
                share: Share::Percent(percent),
                soak_secs: 0,
            },
        ];
        let spec = spec_of(&steps);
        Ok(Some(RolloutPlan {
            version: version_text,
            spec,
            steps,
            max_in_flight,
            window: None,
            wave: 0,
            named: Vec::new(),
            opened_at: now().unix(),
            complete: false,
        }))
    }

    /// The workers following `channel`, as the plan must see them. One replica (SQLite) knows
    /// every poll in memory. Replicas sharing a database each see only the workers polling
    /// them, so the stored inventory (every replica's sightings) is read, with this replica's
    /// fresher sightings on top: a plan judged from one replica's half of the fleet would find
    /// the first wave's workers (polling another replica) absent and open the next wave.
    async fn channel_sightings(&self, channel: &str) -> Result<Vec<Sighted>> {
        let mut by_id: HashMap<String, Sighted> = HashMap::new();
        if self.config.database_url.is_some() {
            let c = channel.to_owned();
            for worker in self.db(move |store| store.channel_workers(&c)).await? {
                by_id.insert(
                    worker.worker_id.clone(),
                    Sighted {
                        id: worker.worker_id,
                        version: worker.version,
                        last_seen: worker.last_seen,
                        stored: true,
                    },
                );
            }
        }
        let inventory = self
            .inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, seen) in inventory.iter().filter(|(_, seen)| seen.channel == channel) {
            let fresher = by_id
                .get(id)
                .is_none_or(|stored| seen.last_seen >= stored.last_seen);
            if fresher {
                by_id.insert(
                    id.clone(),
                    Sighted {
                        id: id.clone(),
                        version: seen.version.clone(),
                        last_seen: seen.last_seen,
                        stored: false,
                    },
                );
            }
        }
        // A worker that moved to another channel since it was stored is not this channel's.
        let moved: Vec<String> = by_id
            .values()
            .filter(|s| s.stored)
            .filter_map(|s| {
                inventory
                    .get(&s.id)
                    .filter(|seen| seen.channel != channel && seen.last_seen >= s.last_seen)
                    .map(|_| s.id.clone())
            })
            .collect();
        for id in moved {
            by_id.remove(&id);
        }
        Ok(by_id.into_values().collect())
    }

    /// The cohort salt of `version` on `channel`: kept while the channel offers that release.
    pub(super) fn salt_for(&self, channel: &str, version: &manifests::Version) -> String {
        read_lock(&self.views)
            .get(channel)
            .filter(|view| &view.release.signed.version == version)
            .map_or_else(
                || format!("{channel}-{version}"),
                |view| view.statement.signed.rollout.salt.clone(),
            )
    }

    /// Where `plan` stands on `channel` now, from the inventory and the reports.
    pub(super) async fn plan_progress(
        &self,
        channel: &str,
        plan: &RolloutPlan,
        percent: u8,
        salt: &str,
        settled_since: Option<i64>,
    ) -> Result<Progress> {
        let (c, v) = (channel.to_owned(), plan.version.clone());
        let (tried, counts) = self
            .db(move |store| {
                let defects = super::release_defect_labels();
                let query = OutcomeQuery {
                    channel: &c,
                    version: &v,
                    defects: &defects,
                };
                Ok((store.tried_workers(query)?, store.release_outcomes(query)?))
            })
            .await?;
        let tried: BTreeSet<String> = tried.into_iter().collect();
        #[allow(clippy::cast_precision_loss)]
        let held = counts.failed > 0
            && counts.failed as f64 >= self.config.auto_halt_ratio * counts.tried as f64;
        let now_secs = now().unix();
        let liveness = i64::try_from(
            (2 * self.config.poll_interval.max(self.config.long_poll_max)).as_secs() + 30,
        )
        .unwrap_or(i64::MAX);
        let members: Vec<Member> = self
            .channel_sightings(channel)
            .await?
            .into_iter()
            .map(|seen| Member {
                bucket: manifests::cohort_bucket(&seen.id, salt),
                // A stored sighting of a worker polling another replica is rewritten only
                // every INVENTORY_WRITE_INTERVAL_SECS while nothing changes: it stays alive
                // that much longer (it counts in flight longer, which only slows the plan).
                alive: now_secs - seen.last_seen
                    <= liveness
                        + if seen.stored {
                            INVENTORY_WRITE_INTERVAL_SECS
                        } else {
                            0
                        },
                tried: tried.contains(&seen.id),
                running: seen.version == plan.version,
                id: seen.id,
            })
            .collect();
        Ok(advance(
            plan,
            percent,
            &members,
            now_secs,
            settled_since,
            held,
        ))
    }

    /// Moves every channel's plan on (the server's background loop, every second).
    pub async fn advance_waves(&self) {
        let active: Vec<String> = read_lock(&self.views)
            .iter()
            .filter(|(_, view)| {
                view.plan.as_ref().is_some_and(|plan| {
                    !plan.complete
                        && !view.statement.signed.halted
                        && plan.version == view.release.signed.version.to_string()
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for channel in active {
            if let Err(error) = self.advance_channel(&channel).await {
                tracing::error!(%channel, %error, "rollout plan not advanced");
            }
        }
    }

    async fn advance_channel(&self, channel: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        // From the channel as stored: another replica may have moved the plan on already, and
        // a plan computed from an older view would name fewer workers than are admitted.
        self.reread_channel_locked(channel).await;
        let Some(view) = read_lock(&self.views).get(channel).cloned() else {
            return Ok(());
        };
        let Some(plan) = view.plan.clone().filter(|p| {
            !p.complete
                && !view.statement.signed.halted
                && p.version == view.release.signed.version.to_string()
        }) else {
            return Ok(());
        };
        let stmt = &view.statement.signed;
        let previous = self.tracker.get(channel).filter(|t| t.wave == plan.wave);
        let progress = self
            .plan_progress(
                channel,
                &plan,
                stmt.rollout.percent,
                &stmt.rollout.salt,
                previous.as_ref().and_then(|t| t.settled_since),
            )
            .await?;
        self.tracker.set(channel, tracked(&progress));
        self.update_wave_metrics(
            channel,
            Some(&progress.plan),
            self.tracker.get(channel).as_ref(),
        );
        if progress.plan == plan && progress.percent == stmt.rollout.percent {
            return Ok(());
        }
        // Every signed change wakes every long poll of the channel: admitting a few more
        // workers waits until the statement is ADMIT_INTERVAL_SECS old; opening a wave (or
        // completing the plan) is signed at once.
        let admission_only = progress.plan.wave == plan.wave && !progress.plan.complete;
        if admission_only && now().unix() - stmt.issued_at.unix() < ADMIT_INTERVAL_SECS {
            return Ok(());
        }
        let detail = if progress.plan.complete {
            format!("rollout plan {} complete", plan.spec)
        } else if progress.plan.wave != plan.wave {
            format!(
                "wave {} of {} opened ({})",
                progress.plan.wave + 1,
                plan.steps.len(),
                plan.steps[progress.plan.wave]
            )
        } else {
            format!(
                "wave {} of {}: {} named, {}% of the cohort, {} in flight",
                progress.plan.wave + 1,
                plan.steps.len(),
                progress.plan.named.len(),
                progress.percent,
                progress.in_flight
            )
        };
        let percent = progress.percent;
        self.change_channel_locked(channel, "wave", "server", &detail, None, |current| {
            Ok(ChannelChange {
                percent,
                plan: Some(progress.plan.clone()),
                ..ChannelChange::from(current)
            })
        })
        .await?;
        Ok(())
    }

    /// The status of `view`'s plan, for the admin API.
    pub(super) fn wave_summary(
        &self,
        channel: &str,
        plan: &RolloutPlan,
        halted: bool,
    ) -> WaveSummary {
        let tracked = self.tracker.get(channel).filter(|t| t.wave == plan.wave);
        let step = plan.steps[plan.wave];
        let next_step_at = next_step_at(plan, tracked.as_ref());
        let state = if plan.complete {
            "complete"
        } else if halted {
            "halted"
        } else {
            match tracked.as_ref().and_then(|t| t.waiting) {
                Some(why) if why.starts_with("held") => "held",
                Some("outside the maintenance window") => "waiting_for_window",
                Some("soaking") => "soaking",
                _ => "rolling",
            }
        };
        WaveSummary {
            number: plan.wave + 1,
            of: plan.steps.len(),
            step: step.to_string(),
            spec: plan.spec.clone(),
            state: state.to_owned(),
            named: plan.named.len(),
            in_flight: tracked.as_ref().map_or(0, |t| t.in_flight),
            max_in_flight: plan.max_in_flight.to_string(),
            window: plan.window.map(|w| format!("{w} UTC")),
            next_step_at: next_step_at
                .and_then(manifests::Timestamp::from_unix)
                .map(|at| at.to_string()),
            waiting: tracked.and_then(|t| t.waiting).map(str::to_owned),
        }
    }

    /// `update_server_rollout_wave` and `update_server_rollout_next_step_timestamp_seconds`.
    pub(super) fn update_wave_metrics(
        &self,
        channel: &str,
        plan: Option<&RolloutPlan>,
        tracked: Option<&Tracked>,
    ) {
        let m = &self.metrics;
        m.rollout_wave
            .with_label_values(&[channel])
            .set(plan.map_or(0, |p| i64::try_from(p.wave + 1).unwrap_or(i64::MAX)));
        match plan.and_then(|p| next_step_at(p, tracked.filter(|t| t.wave == p.wave))) {
            #[allow(clippy::cast_precision_loss)]
            Some(at) => m
                .rollout_next_step
                .with_label_values(&[channel])
                .set(at as f64),
            None => {
                let _ = m.rollout_next_step.remove_label_values(&[channel]);
            }
        }
    }
}

/// The plan of a channel whose release is promoted again to `percent`: a plan under way keeps
/// its named workers and the waves below the new share, and ends on it; without one, the new
/// share applies at once unless `max_in_flight` bounds it.
pub(super) fn widened_plan(
    view: &super::ChannelView,
    percent: u8,
    max_in_flight: Option<Share>,
) -> Option<RolloutPlan> {
    let last = Step {
        share: Share::Percent(percent),
        soak_secs: 0,
    };
    match view.plan.clone().filter(|p| !p.complete) {
        Some(mut plan) if percent > 0 => {
            let current = plan.steps[plan.wave];
            plan.steps.retain(|s| match s.share {
                Share::Workers(_) => true,
                Share::Percent(p) => p < percent,
            });
            plan.steps.push(last);
            plan.wave = plan
                .steps
                .iter()
                .position(|s| *s == current)
                .unwrap_or(plan.steps.len() - 1);
            plan.spec = spec_of(&plan.steps);
            if let Some(max) = max_in_flight {
                plan.max_in_flight = max;
            }
            Some(plan)
        }
        _ => max_in_flight
            .filter(|_| percent > 0)
            .map(|max| RolloutPlan {
                version: view.release.signed.version.to_string(),
                spec: spec_of(&[last]),
                steps: vec![last],
                max_in_flight: max,
                window: None,
                wave: 0,
                named: Vec::new(),
                opened_at: now().unix(),
                complete: false,
            }),
    }
}

fn spec_of(steps: &[Step]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// When the plan's next step opens: known once the current step settled (its soak runs), and
/// moved to the window's next opening.
fn next_step_at(plan: &RolloutPlan, tracked: Option<&Tracked>) -> Option<i64> {
    if plan.complete {
        return None;
    }
    let since = tracked?.settled_since?;
    let at =
        since.saturating_add(i64::try_from(plan.steps[plan.wave].soak_secs).unwrap_or(i64::MAX));
    Some(plan.window.map_or(at, |w| w.next_open(at)))
}

pub(super) fn tracked(progress: &Progress) -> Tracked {
    Tracked {
        wave: progress.plan.wave,
        settled_since: progress.settled_since,
        in_flight: progress.in_flight,
        waiting: progress.waiting,
    }
}

#[cfg(test)]
#[path = "waves_tests.rs"]
mod tests;
