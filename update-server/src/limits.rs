//! What one client may cost the server: a cap on open connections ([`ConnectionLimit`]) and
//! per-credential rate limits on `report` and `register` ([`WorkerRateLimit`]). The header-read
//! and idle timeouts and the body size limits are set where the server and the router are built
//! ([`crate::run`], [`crate::http::router`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures_util::future::{ready, Ready};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;
use tower::Service;

/// Makes one service per accepted connection, each holding a permit of a semaphore of
/// `--max-connections` until the connection (and every request on it) is gone.
///
/// The server asks this make-service to be ready *before* it accepts the next connection's
/// service, so at the cap the accept loop waits: further connections wait in the kernel's listen
/// backlog instead of holding a task and a file descriptor each, and get served (the health
/// check among them) as soon as the header-read or idle timeout frees a slot.
#[derive(Debug)]
pub struct ConnectionLimit {
    /// The application every connection gets a clone of.
    router: Router,
    /// `--max-connections` permits.
    semaphore: PollSemaphore,
    /// The permit acquired by `poll_ready`, handed to the next connection.
    permit: Option<OwnedSemaphorePermit>,
}

impl ConnectionLimit {
    /// Serves `router` on at most `max` connections at a time.
    pub fn new(router: Router, max: usize) -> Self {
        ConnectionLimit {
            router,
            semaphore: PollSemaphore::new(Arc::new(Semaphore::new(max.max(1)))),
            permit: None,
        }
    }
}

impl Service<SocketAddr> for ConnectionLimit {
    type Response = Permitted;
    type Error = Infallible;
    type Future = Ready<Result<Permitted, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.permit.is_none() {
            match self.semaphore.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => self.permit = Some(permit),
                // The semaphore is never closed.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _peer: SocketAddr) -> Self::Future {
        // `poll_ready` came first (tower's contract); without a permit, take one now if free.
        let permit = self
            .permit
            .take()
            .or_else(|| self.semaphore.clone_inner().try_acquire_owned().ok());
        ready(Ok(Permitted {
            router: self.router.clone(),
            _permit: permit.map(Arc::new),
        }))
    }
}

/// The application for one connection, with its connection permit (shared by the clones hyper
/// makes, so it is released when the last one is dropped).
#[derive(Debug, Clone)]
pub struct Permitted {
    /// The application.
    router: Router,
    /// Released when the connection ends.
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl<B> Service<axum::http::Request<B>> for Permitted
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        <Router as Service<axum::http::Request<B>>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        self.router.call(request)
    }
}

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
