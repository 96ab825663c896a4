//! What one client may cost the server: a cap on open connections ([`ConnectionLimit`], from the
//! `serve-limits` crate the agent's runner ports share) and per-credential rate limits on
//! `report` and `register` ([`WorkerRateLimit`]). The header-read and idle timeouts and the body
//! size limits are set where the server and the router are built ([`crate::run`],
//! [`crate::http::router`]).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
pub use serve_limits::{with_timeouts, ConnectionLimit, Permitted};

/// What a rate limit counts against: the matched route and the authenticated credential.
pub type RateKey = (String, Option<crate::tokens::Caller>);

/// Per-credential GCRA rate limits (governor) on the worker routes that write: `report` and
/// `register`. Keyed by route and credential, so one worker (or one shared token) flooding
/// reports cannot starve the others nor fill the store; the keys are bounded by the
/// credentials the server accepts.
#[derive(Debug)]
pub struct WorkerRateLimit {
    limiter: DefaultKeyedRateLimiter<RateKey>,
}

impl WorkerRateLimit {
    /// `per_minute` requests a minute per credential and route, in bursts of up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        WorkerRateLimit {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
        }
    }

    /// `Ok` when `key` may make one more request now, else how long until it may.
    pub fn check(&self, key: RateKey) -> Result<(), Duration> {
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
