//! The figures of a run: snapshots of the fleet's versions (progress lines, stop conditions)
//! and the final `summary` line (percentiles, per-channel figures, summed agent counters).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use manifests::Version;

use super::fleet::Fleet;
use super::{ms_since, SimulateArgs, Stop};
use crate::handover::Outcome;
use crate::state::{Counters, StateDir};

/// Counts at one instant.
#[derive(Debug)]
pub(super) struct Snapshot {
    pub(super) versions: BTreeMap<String, usize>,
    pub(super) on_target: usize,
    pub(super) in_flight: usize,
    pub(super) stopped: usize,
}

impl Snapshot {
    pub(super) fn take(fleet: &Fleet, target: Option<&Version>) -> Self {
        let mut snapshot = Snapshot {
            versions: BTreeMap::new(),
            on_target: 0,
            in_flight: 0,
            stopped: 0,
        };
        for slot in &fleet.agents {
            let record = slot.record();
            *snapshot
                .versions
                .entry(record.version.to_string())
                .or_default() += 1;
            if target.is_some_and(|t| *t == record.version) {
                snapshot.on_target += 1;
            }
            snapshot.in_flight += usize::from(record.in_flight.is_some());
            snapshot.stopped += usize::from(record.stopped.is_some());
        }
        snapshot
    }
}

/// The time by which `share` of `total` agents had an event, from sorted event times.
pub(super) fn time_to(sorted: &[i64], total: usize, share: f64) -> Option<i64> {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((share * total as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

pub(super) fn percentiles(mut times: Vec<i64>, total: usize) -> serde_json::Value {
    times.sort_unstable();
    serde_json::json!({
        "agents": times.len(),
        "first_ms": times.first(),
        "p50_ms": time_to(&times, total, 0.5),
        "p90_ms": time_to(&times, total, 0.9),
        "p99_ms": time_to(&times, total, 0.99),
        "p100_ms": time_to(&times, total, 1.0),
    })
}

pub(super) fn add_counters(total: &mut Counters, one: &Counters) {
    total.attempts += one.attempts;
    total.successes += one.successes;
    total.deferred += one.deferred;
    total.download_bytes += one.download_bytes;
    for (reason, n) in &one.failures {
        *total.failures.entry(reason.clone()).or_default() += n;
    }
    for (reason, n) in &one.rollbacks {
        *total.rollbacks.entry(reason.clone()).or_default() += n;
    }
}

/// Per channel: agents, final versions, and per version how many agents attempted, staged,
/// committed or rolled it back; the persisted agent counters, summed.
#[derive(Debug, Default)]
pub(super) struct ChannelFigures {
    agents: usize,
    versions: BTreeMap<String, usize>,
    attempted: BTreeMap<String, usize>,
    staged: BTreeMap<String, usize>,
    succeeded: BTreeMap<String, usize>,
    rolled_back: BTreeMap<String, usize>,
    attempt_failures: BTreeMap<String, usize>,
    saw_halted: usize,
    counters: Counters,
}

pub(super) fn count_versions<'a>(
    map: &mut BTreeMap<String, usize>,
    versions: impl Iterator<Item = &'a Version>,
) {
    let distinct: BTreeSet<String> = versions.map(ToString::to_string).collect();
    for version in distinct {
        *map.entry(version).or_default() += 1;
    }
}

pub(super) fn summarise(
    args: &SimulateArgs,
    fleet: &Fleet,
    t0: Instant,
    stopped_at: Instant,
    stop: Stop,
    stimulus: serde_json::Value,
    timeline: Vec<serde_json::Value>,
) -> serde_json::Value {
    let mut channels: BTreeMap<String, ChannelFigures> = BTreeMap::new();
    let mut committed = Vec::new();
    let mut staged = Vec::new();
    let mut totals = serde_json::Map::new();
    let (mut polls, mut polls_changed, mut check_failures) = (0u64, 0u64, 0u64);
    let mut stopped = BTreeMap::<String, usize>::new();
    let mut counters = Counters::default();
    for slot in &fleet.agents {
        let record = slot.record();
        let figures = channels.entry(slot.channel.clone()).or_default();
        figures.agents += 1;
        *figures
            .versions
            .entry(record.version.to_string())
            .or_default() += 1;
        count_versions(&mut figures.attempted, record.attempts.iter().map(|a| &a.0));
        count_versions(&mut figures.staged, record.staged.iter().map(|a| &a.0));
        count_versions(
            &mut figures.succeeded,
            record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::Success)
                .map(|v| &v.0),
        );
        count_versions(
            &mut figures.rolled_back,
            record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::RolledBack)
                .map(|v| &v.0),
        );
        for (_, reason, _) in &record.attempt_failures {
            *figures.attempt_failures.entry(reason.clone()).or_default() += 1;
        }
        figures.saw_halted += usize::from(record.saw_halted.is_some());
        polls += record.polls;
        polls_changed += record.polls_changed;
        check_failures += record.check_failures;
        if let Some(why) = &record.stopped {
            *stopped.entry(why.clone()).or_default() += 1;
        }
        if let Some(target) = &args.until_version {
            if let Some((_, _, _, at)) = record
                .verdicts
                .iter()
                .find(|v| v.0 == *target && v.1 == Outcome::Success)
            {
                committed.push(ms_since(t0, *at));
            }
            if let Some((_, at)) = record.staged.iter().find(|v| v.0 == *target) {
                staged.push(ms_since(t0, *at));
            }
        }
        drop(record);
        // The agent's own persisted counters (`worker_update_*`).
        if let Ok(one) = StateDir::open(&slot.dir.join("state")).and_then(|s| s.counters()) {
            add_counters(&mut figures.counters, &one);
            add_counters(&mut counters, &one);
        }
    }
    totals.insert("polls".to_owned(), polls.into());
    totals.insert("polls_changed".to_owned(), polls_changed.into());
    totals.insert("check_failures".to_owned(), check_failures.into());

    let halt = args.until_halted.as_ref().map(|channel| {
        let first = fleet.first_halt.get().copied();
        let (mut before, mut after, mut verdicts_before, mut verdicts_after, mut spared) =
            (0usize, 0usize, 0usize, 0usize, 0usize);
        for slot in fleet.agents.iter().filter(|s| &s.channel == channel) {
            let record = slot.record();
            let bad: Vec<_> = record
                .attempts
                .iter()
                .filter(|a| args.fail_version.contains(&a.0))
                .collect();
            if bad.is_empty() {
                spared += 1;
            }
            for (_, at) in bad {
                if first.is_some_and(|h| *at >= h) {
                    after += 1;
                } else {
                    before += 1;
                }
            }
            for (_, _, _, at) in record
                .verdicts
                .iter()
                .filter(|v| v.1 == Outcome::RolledBack && args.fail_version.contains(&v.0))
            {
                if first.is_some_and(|h| *at >= h) {
                    verdicts_after += 1;
                } else {
                    verdicts_before += 1;
                }
            }
        }
        serde_json::json!({
            "channel": channel,
            "first_seen_ms": first.map(|h| ms_since(t0, h)),
            "attempts_started_before_halt": before,
            "attempts_started_after_halt": after,
            "rolled_back_before_halt": verdicts_before,
            "rolled_back_after_halt": verdicts_after,
            "spared": spared,
        })
    });
    let by_channel: serde_json::Map<String, serde_json::Value> = channels
        .into_iter()
        .map(|(name, f)| {
            (
                name,
                serde_json::json!({
                    "agents": f.agents,
                    "versions": f.versions,
                    "attempted": f.attempted,
                    "staged": f.staged,
                    "succeeded": f.succeeded,
                    "rolled_back": f.rolled_back,
                    "attempt_failures": f.attempt_failures,
                    "saw_halted": f.saw_halted,
                    "counters": counters_json(&f.counters),
                }),
            )
        })
        .collect();
    let final_versions = Snapshot::take(fleet, args.until_version.as_ref()).versions;
    serde_json::json!({
        "event": "summary",
        "agents": args.agents,
        "canary": args.canary,
        "channel": args.channel,
        "long_poll": args.long_poll,
        "poll_interval_secs": args.poll_interval_secs,
        "probation_ms": args.probation_ms,
        "fail_versions": args.fail_version.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "stop": stop.label(),
        "run_ms": ms_since(t0, stopped_at),
        "stimulus": stimulus,
        "target_version": args.until_version.as_ref().map(ToString::to_string),
        "versions": final_versions,
        "committed": args.until_version.as_ref().map(|_| percentiles(committed, args.agents)),
        "staged": args.until_version.as_ref().map(|_| percentiles(staged, args.agents)),
        "halt": halt,
        "by_channel": by_channel,
        "totals": totals,
        "counters": counters_json(&counters),
        "stopped_agents": stopped,
        "timeline": timeline,
    })
}

pub(super) fn counters_json(counters: &Counters) -> serde_json::Value {
    serde_json::json!({
        "attempts": counters.attempts,
        "successes": counters.successes,
        "failures": counters.failures,
        "rollbacks": counters.rollbacks,
        "deferred": counters.deferred,
        "download_bytes": counters.download_bytes,
    })
}
