//! Retrying after a refusal without flooding anyone, and without giving up for good:
//!
//! - [`Backoff`]: the capped exponential pause (with jitter, from `backon`) of the update loop
//!   after a refused channel answer, and of an artifact source after it served bad bytes;
//! - [`SourceVerdicts`]: a hash/size verdict condemns the *source* that sent the bytes for a
//!   while, never the bytes (a transient corruption on a mirror must not keep a worker off a
//!   good release); [`artifact_sources`] lists where else the same bytes can come from;
//! - [`Reported`]: each release and reason is reported once, in bounded memory (a hostile
//!   server can mint new serials and versions forever);
//! - [`outbox_has_room`]: the worker's own failure reports stop at [`OUTBOX_LIMIT`] waiting
//!   files (a server that refuses reports cannot fill the disk).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::error::FailureReason;
use crate::handover::OUTBOX_DIR;
use crate::state::StateDir;

/// How far a [`Backoff`] grows: at most this many times its base (1 minute -> 1 hour).
pub const BACKOFF_CAP_FACTOR: u32 = 60;

/// A capped exponential backoff: after the n-th refusal in a row the next try waits
/// `base * 2^(n-1)` plus up to as much again of jitter (so a fleet refusing the same answer
/// does not come back together), never more than `base * BACKOFF_CAP_FACTOR`.
#[derive(Debug)]
pub struct Backoff {
    /// The schedule, to start it again after a success.
    builder: ExponentialBuilder,
    /// The longest pause.
    cap: Duration,
    /// The pauses still to come in the current run of refusals.
    delays: ExponentialBackoff,
    /// Refusals since the last success.
    failures: u32,
    /// When the next try may happen (`None`: now).
    until: Option<Instant>,
}

impl Backoff {
    /// A backoff starting at `base` (at least 1 ms).
    pub fn new(base: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        let cap = base * BACKOFF_CAP_FACTOR;
        let builder = ExponentialBuilder::default()
            .with_min_delay(base)
            .with_max_delay(cap)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
            cap,
            failures: 0,
            until: None,
        }
    }

    /// Records a refusal at `now`; returns the pause before the next try.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let pause = self.delays.next().unwrap_or(self.cap).min(self.cap);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(now + pause);
        pause
    }

    /// Records a success: the next refusal starts from the base again.
    pub fn succeeded(&mut self) {
        self.delays = self.builder.build();
        self.failures = 0;
        self.until = None;
    }

    /// How long to wait still at `now` (`None`: try now).
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|pause| !pause.is_zero())
    }

    /// Refusals since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Whether a refusal for `reason` means the answer itself failed verification (forged,
/// expired, replayed, mixed and matched, oversized, unreadable): it is not cached and the loop
/// backs off. `false` for a genuine answer this worker cannot act on (a release for another
/// platform or product, a downgrade, a needed hop), which the server holds in its long poll
/// until something changes.
pub fn answer_failed(reason: FailureReason) -> bool {
    !matches!(
        reason,
        FailureReason::Verification(
            manifests::Reason::Downgrade
                | manifests::Reason::WrongPlatform
                | manifests::Reason::WrongProduct
                | manifests::Reason::NeedsHop
        )
    )
}

/// How many sources [`SourceVerdicts`] remembers; past it, the one allowed back soonest is
/// forgotten (each release names one URL per platform, so this is many releases' worth).
pub const SOURCE_LIMIT: usize = 64;

/// Which artifact sources served bad bytes lately, each with its own [`Backoff`].
#[derive(Debug)]
pub struct SourceVerdicts {
    /// The first pause of a newly condemned source.
    base: Duration,
    /// Condemned sources, by URL.
    sources: BTreeMap<String, Backoff>,
}

impl SourceVerdicts {
    /// No source condemned yet; a condemned one is avoided for `base` at first.
    pub fn new(base: Duration) -> Self {
        SourceVerdicts {
            base,
            sources: BTreeMap::new(),
        }
    }

    /// Condemns `source` after bad bytes at `now`: the pause before it is tried again.
    pub fn condemn(&mut self, source: &str, now: Instant) -> Duration {
        if !self.sources.contains_key(source) && self.sources.len() >= SOURCE_LIMIT {
            let soonest = self
                .sources
                .iter()
                .min_by_key(|(_, backoff)| backoff.remaining(now))
                .map(|(url, _)| url.clone());
            if let Some(url) = soonest {
                self.sources.remove(&url);
            }
        }
        self.sources
            .entry(source.to_owned())
            .or_insert_with(|| Backoff::new(self.base))
            .failed(now)
    }

    /// `source` served good bytes: it starts with a clean record.
    pub fn acquit(&mut self, source: &str) {
        self.sources.remove(source);
    }

    /// How long `source` is still avoided at `now` (`None`: it may be tried).
    pub fn waiting(&self, source: &str, now: Instant) -> Option<Duration> {
        self.sources.get(source)?.remaining(now)
    }
}

/// Where the artifact `sha256` with the signed `url` can be fetched from, in order: the
/// release's signed `mirrors`, then the signed URL (resolved against `server`, the update server
/// in use), then that server's own copy when the URL points elsewhere; each once. The bytes are
/// checked against the signed hash whatever the source.
pub fn artifact_sources(
    server: &str,
    mirrors: &[String],
    resolved_url: &str,
    sha256: &str,
) -> Vec<String> {
    let own = format!(
        "{}/api/worker-updates/artifacts/{sha256}",
        server.trim_end_matches('/')
    );
    let mut sources: Vec<String> = Vec::with_capacity(mirrors.len() + 2);
    for source in mirrors
        .iter()
        .map(String::as_str)
        .chain([resolved_url, own.as_str()])
    {
        if !sources.iter().any(|known| known == source) {
            sources.push(source.to_owned());
        }
    }
    sources
}

/// How many report keys [`Reported`] remembers; past it, the oldest is forgotten (it could be
/// reported again, once, by then rare enough not to matter).
pub const REPORTED_LIMIT: usize = 256;

/// What was reported already (release and reason), oldest forgotten first past
/// [`REPORTED_LIMIT`].
#[derive(Debug, Default)]
pub struct Reported {
    /// The keys, oldest first.
    order: VecDeque<String>,
    /// The same keys, to look them up.
    keys: HashSet<String>,
}

impl Reported {
    /// Records `key`; `true` when it was not reported yet (report it now).
    pub fn insert(&mut self, key: String) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() >= REPORTED_LIMIT {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
        self.keys.insert(key.clone());
        self.order.push_back(key);
        true
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The most outcome files the worker lets wait in the outbox before it drops its own new
/// failure reports (still counted in `worker_update_failure_total`, and logged). The
/// supervisor's outcomes (success, rolled back) are never dropped: it writes them itself.
pub const OUTBOX_LIMIT: usize = 32;

/// Whether the outbox of `state` holds fewer than [`OUTBOX_LIMIT`] outcomes.
pub fn outbox_has_room(state: &StateDir) -> bool {
    std::fs::read_dir(state.path().join(OUTBOX_DIR)).map_or(true, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
            < OUTBOX_LIMIT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() {
        let base = Duration::from_secs(60);
        let mut backoff = Backoff::new(base);
        let now = Instant::now();
        assert_eq!(backoff.remaining(now), None);
        let mut expected = base;
        for _ in 0..10 {
            let pause = backoff.failed(now);
            // Jitter adds up to as much again, never past the cap.
            assert!(
                pause >= expected && pause <= (expected * 2).min(base * 60),
                "{pause:?}"
            );
            expected = (expected * 2).min(base * 60);
        }
        assert_eq!(backoff.failures(), 10);
        assert!(
            backoff.failed(now) == base * 60,
            "at the cap, no jitter past it"
        );
        assert!(backoff.remaining(now).is_some());
        assert_eq!(backoff.remaining(now + base * 61), None);
        backoff.succeeded();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.remaining(now), None);
        let pause = backoff.failed(now);
        assert!(pause >= base && pause <= base * 2, "{pause:?}");
    }

    #[test]
    fn a_condemned_source_is_avoided_for_a_while_then_tried_again() {
        let mut verdicts = SourceVerdicts::new(Duration::from_secs(1));
        let now = Instant::now();
        let pause = verdicts.condemn("http://mirror/a", now);
        assert!(verdicts.waiting("http://mirror/a", now).is_some());
        assert_eq!(verdicts.waiting("http://server/a", now), None);
        assert_eq!(verdicts.waiting("http://mirror/a", now + pause), None);
        // Condemned again: a longer pause.
        let again = verdicts.condemn("http://mirror/a", now + pause);
        assert!(again >= Duration::from_secs(2), "{again:?}");
        verdicts.acquit("http://mirror/a");
        assert_eq!(verdicts.waiting("http://mirror/a", now), None);
        for i in 0..SOURCE_LIMIT + 10 {
            verdicts.condemn(&format!("http://mirror/{i}"), now);
        }
        assert_eq!(verdicts.sources.len(), SOURCE_LIMIT);
    }

    #[test]
    fn a_mirror_url_falls_back_to_the_servers_own_copy() {
        let sha = "ab".repeat(32);
        assert_eq!(
            artifact_sources("http://server/", &[], "http://mirror/x", &sha),
            [
                "http://mirror/x".to_owned(),
                format!("http://server/api/worker-updates/artifacts/{sha}")
            ]
        );
        let own = format!("http://server/api/worker-updates/artifacts/{sha}");
        assert_eq!(artifact_sources("http://server", &[], &own, &sha), [own]);
    }

    #[test]
    fn signed_mirrors_come_first_in_their_order_each_once() {
        let sha = "ab".repeat(32);
        let own = format!("http://server/api/worker-updates/artifacts/{sha}");
        let mirrors = [
            format!("https://b.example/{sha}"),
            format!("https://a.example/{sha}"),
            format!("https://b.example/{sha}"),
        ];
        assert_eq!(
            artifact_sources("http://server", &mirrors, &own, &sha),
            [mirrors[0].clone(), mirrors[1].clone(), own]
        );
    }

    #[test]
    fn reported_keys_are_remembered_in_bounded_memory() {
        let mut reported = Reported::default();
        assert!(reported.insert("2.0.0/threshold".to_owned()));
        assert!(!reported.insert("2.0.0/threshold".to_owned()));
        for i in 0..10 * REPORTED_LIMIT {
            reported.insert(format!("{i}/bad_signature"));
        }
        assert_eq!(reported.len(), REPORTED_LIMIT);
        assert!(
            reported.insert("2.0.0/threshold".to_owned()),
            "forgotten by now"
        );
    }

    #[test]
    fn the_outbox_has_room_until_its_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::open(dir.path()).expect("state");
        for i in 0..OUTBOX_LIMIT {
            assert!(outbox_has_room(&state));
            let file = dir
                .path()
                .join(OUTBOX_DIR)
                .join(format!("{i}-failure.json"));
            std::fs::write(file, b"{}").expect("write");
        }
        assert!(!outbox_has_room(&state));
    }
}
