//! The worker's handshake with the update server, without waiting on it: an update-server
//! outage must not keep a worker from serving tasks, nor a new version in probation from
//! proving itself (issue 11). The worker gives registration a short while; if the server does
//! not answer in it, the worker starts with the last handshake it received (cached in the state
//! directory) and keeps registering in the background.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::Handshake;
use crate::error::UpdateFailure;
use crate::state::{write_atomic, StateDir};
use crate::updater::WorkerSession;

/// State-directory file of the last handshake the update server answered.
pub const HANDSHAKE_FILE: &str = "handshake.json";

/// How long start-up waits for the update server before it goes on without it. Long enough
/// for a retry against a server that is starting too; short against a Manager waiting.
pub const REGISTRATION_WAIT: Duration = Duration::from_secs(1);

/// The poll interval assumed until the server suggests one (no handshake cached yet).
const DEFAULT_POLL_INTERVAL_S: u64 = 60;

fn cache_path(state: &StateDir) -> PathBuf {
    state.path().join(HANDSHAKE_FILE)
}

/// The cached handshake, if one was saved and is readable.
pub fn cached(state: &StateDir) -> Option<Handshake> {
    let bytes = std::fs::read(cache_path(state)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Saves `handshake` as the last one received (a failure is only logged: the cache only helps
/// the next start during an outage).
pub fn save(state: &StateDir, handshake: &Handshake) {
    let path = cache_path(state);
    let result = serde_json::to_vec_pretty(handshake)
        .map_err(|e| e.to_string())
        .and_then(|bytes| write_atomic(&path, &bytes).map_err(|e| e.to_string()));
    if let Err(error) = result {
        tracing::warn!(%error, path = %path.display(), "could not cache the handshake");
    }
}

/// What a worker starts with when the server does not answer: the cached handshake, else
/// defaults. Never "below the minimum": a refusal to start rests on the server's live answer,
/// never on a stale copy (an outage must not stop a worker).
fn fallback(state: &StateDir) -> Handshake {
    match cached(state) {
        Some(handshake) => {
            tracing::warn!(
                minimum = %handshake.minimum_version,
                poll_interval_s = handshake.poll_interval_s,
                "update server unreachable: using the cached handshake; registering in the background"
            );
            Handshake {
                below_minimum: false,
                ..handshake
            }
        }
        None => {
            tracing::warn!("update server unreachable and no cached handshake: starting with defaults; registering in the background");
            Handshake {
                minimum_version: String::new(),
                recommended_version: String::new(),
                poll_interval_s: DEFAULT_POLL_INTERVAL_S,
                below_minimum: false,
                root_version: 0,
            }
        }
    }
}

/// Registers with the update server for up to [`REGISTRATION_WAIT`]; a handshake received is
/// cached. When the server does not answer in time, returns [`fallback`]'s handshake and keeps
/// registering in the background (same backoff, `on_failure` sees every failed attempt) until
/// it succeeds or `shutdown`. `None` only when `shutdown` comes first.
pub async fn register_or_cached<F>(
    session: &WorkerSession,
    channel: &str,
    shutdown: &CancellationToken,
    on_failure: F,
) -> Option<Handshake>
where
    F: Fn(&UpdateFailure) + Clone + Send + Sync + 'static,
{
    let attempt = session.register(channel, shutdown, on_failure.clone());
    match tokio::time::timeout(REGISTRATION_WAIT, attempt).await {
        Ok(Some(handshake)) => {
            save(&session.state, &handshake);
            Some(handshake)
        }
        Ok(None) => None,
        Err(_) => {
            tokio::spawn({
                let session = session.clone();
                let channel = channel.to_owned();
                let shutdown = shutdown.clone();
                async move {
                    if let Some(handshake) = session.register(&channel, &shutdown, on_failure).await
                    {
                        save(&session.state, &handshake);
                        tracing::info!(minimum = %handshake.minimum_version, "registered with the update server");
                    }
                }
            });
            Some(fallback(&session.state))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_is_the_cached_handshake_never_below_the_minimum() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::open(dir.path()).expect("state");
        assert_eq!(fallback(&state).poll_interval_s, DEFAULT_POLL_INTERVAL_S);
        save(
            &state,
            &Handshake {
                minimum_version: "1.2.0".to_owned(),
                recommended_version: "1.3.0".to_owned(),
                poll_interval_s: 17,
                below_minimum: true,
                root_version: 3,
            },
        );
        let handshake = fallback(&state);
        assert_eq!(handshake.poll_interval_s, 17);
        assert_eq!(handshake.minimum_version, "1.2.0");
        assert!(!handshake.below_minimum);
    }
}
