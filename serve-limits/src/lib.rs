//! What one client may cost an HTTP server of the workspace (the update server, the agent's
//! ESUP runner ports): a cap on open connections ([`ConnectionLimit`]) and the header-read and
//! idle timeouts ([`with_timeouts`]). Idle or slow-loris connections beyond the cap wait in the
//! kernel's listen backlog instead of holding a task and a file descriptor each, so they cannot
//! exhaust the process's descriptors (and with them every other listener of the process).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use futures_util::future::{ready, Ready};
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

/// `header_read_timeout` for a connection's first request (which also bounds the TLS/protocol
/// detection), `idle_timeout` for the next one on a kept-alive connection (hyper's header-read
/// timer, which runs while a connection waits for a request head).
pub fn with_timeouts<A>(
    server: axum_server::Server<SocketAddr, A>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
) -> axum_server::Server<SocketAddr, A> {
    let mut server = server.first_request_timeout(header_read_timeout);
    server
        .http_builder()
        .http1()
        .header_read_timeout(idle_timeout);
    server
}
