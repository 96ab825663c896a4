//! Calls to the ESUP Manager: register, heartbeat, health, and completion callbacks.
//!
//! Every call carries `Accept: application/json`, `Authorization: Bearer RUNNER_TOKEN` and
//! `X-Runner-Version` (the protocol version), with a 5 s timeout; completion callbacks connect
//! in 5 s and read for 30 s. Completion callbacks go only to the Manager's origins
//! (`MANAGER_CALLBACK_ORIGINS`, by default `MANAGER_URL`'s), and no call follows a redirect: the
//! token is never sent to another host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::egress::CallbackOrigins;
use crate::error::WriteError;
use crate::fs::write_atomic;

/// A failed Manager call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// The Manager answered with a non-success status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL called.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The Manager could not be reached (or timed out).
    #[error("{url}: {message}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// What failed.
        message: String,
    },
    /// The call was not made: the URL is not at an allowed Manager origin.
    #[error("{url}: not called: {message}")]
    Refused {
        /// The URL refused.
        url: String,
        /// Why.
        message: String,
    },
}

/// The body of `POST /runner/register`.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// `{base}-{host}-{port}`.
    pub id: String,
    /// Where the Manager reaches the instance.
    pub url: String,
    /// Types this instance runs.
    pub task_types: Vec<String>,
    /// `available` or `busy`.
    pub availability: String,
}

/// The body of a completion callback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Completion {
    /// The task.
    pub task_id: String,
    /// `completed`, `failed` or `timeout`.
    pub status: String,
    /// Why it failed (null on success).
    pub error_message: Option<String>,
    /// What the pipeline said.
    pub script_output: String,
}

/// A completion waiting to be delivered, persisted in the task workspace so that a restart of
/// the agent (whatever its cause) does not lose it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCompletion {
    /// The Manager's callback URL.
    pub url: String,
    /// What to send.
    pub completion: Completion,
    /// Attempts made so far.
    pub attempts: u32,
}

/// File name of a [`PendingCompletion`] in a task workspace.
pub const PENDING_COMPLETION: &str = ".completion-pending.json";

/// The Manager client.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
    callback_http: reqwest::Client,
    base: String,
    token: String,
    protocol_version: String,
    callback_origins: CallbackOrigins,
}

impl ManagerClient {
    /// A client for the Manager at `base`; completion callbacks only to `base`'s origin.
    pub fn new(base: &str, token: &str, protocol_version: &str) -> Result<Self, reqwest::Error> {
        // Every call carries the token: a redirect (to whatever host) is an answer, not a hop.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let callback_http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ManagerClient {
            http,
            callback_http,
            base: base.to_owned(),
            token: token.to_owned(),
            protocol_version: protocol_version.to_owned(),
            callback_origins: CallbackOrigins::new(&[], base).unwrap_or_default(),
        })
    }

    /// Completion callbacks go to these origins only (`MANAGER_CALLBACK_ORIGINS`).
    pub fn with_callback_origins(mut self, origins: CallbackOrigins) -> Self {
        self.callback_origins = origins;
        self
    }

    /// `Ok` when a completion may be sent to `url`; else why not (reason `callback_origin`).
    pub fn check_callback(&self, url: &str) -> Result<(), String> {
        self.callback_origins.check(url)
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, url)
            .header("Accept", "application/json")
            .bearer_auth(&self.token)
            .header("X-Runner-Version", &self.protocol_version)
    }

    async fn send(&self, builder: reqwest::RequestBuilder, url: &str) -> Result<(), ManagerError> {
        let response = builder
            .send()
            .await
            .map_err(|e| ManagerError::Unreachable {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(ManagerError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        })
    }

    /// `POST /runner/register`.
    pub async fn register(&self, registration: &Registration) -> Result<(), ManagerError> {
        let url = format!("{}/runner/register", self.base);
        let builder = self
            .request(&self.http, reqwest::Method::POST, &url)
            .json(registration);
        self.send(builder, &url).await
    }

    /// `POST /runner/heartbeat/{runner_id}`.
    pub async fn heartbeat(&self, runner_id: &str, availability: &str) -> Result<(), ManagerError> {
        let url = format!("{}/runner/heartbeat/{runner_id}", self.base);
        let builder = self
            .request(&self.http, reqwest::Method::POST, &url)
            .json(&serde_json::json!({ "availability": availability }));
        self.send(builder, &url).await
    }

    /// `GET /api/health`, falling back to `GET /manager/health`.
    pub async fn healthy(&self) -> Result<(), ManagerError> {
        let url = format!("{}/api/health", self.base);
        let first = self
            .send(self.request(&self.http, reqwest::Method::GET, &url), &url)
            .await;
        if first.is_ok() {
            return first;
        }
        let fallback = format!("{}/manager/health", self.base);
        self.send(
            self.request(&self.http, reqwest::Method::GET, &fallback),
            &fallback,
        )
        .await
    }

    /// One completion call (any 2xx is success).
    pub async fn complete_once(
        &self,
        url: &str,
        completion: &Completion,
    ) -> Result<(), ManagerError> {
        if let Err(message) = self.check_callback(url) {
            return Err(ManagerError::Refused {
                url: url.to_owned(),
                message,
            });
        }
        let builder = self
            .request(&self.callback_http, reqwest::Method::POST, url)
            .header("X-API-Token", &self.token)
            .json(completion);
        self.send(builder, url).await
    }
}

/// Delivers completions: the first attempt at once, then up to `retries` retries, retry n
/// after `base * 1.5^(n-1)`. The pending file is written before the first attempt and removed
/// once delivered or given up, so a restarted agent resumes what was not delivered.
#[derive(Debug, Clone)]
pub struct CompletionSender {
    client: ManagerClient,
    retries: u32,
    base_delay: Duration,
}

impl CompletionSender {
    /// A sender.
    pub fn new(client: ManagerClient, retries: u32, base_delay: Duration) -> Self {
        CompletionSender {
            client,
            retries,
            base_delay,
        }
    }

    /// Delay before retry `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1.5_f64.powi(i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX));
        self.base_delay.mul_f64(factor.min(1e6))
    }

    /// Persists `completion` in `workspace`, then delivers it in the background.
    pub fn send(&self, workspace: &Path, url: String, completion: Completion) {
        if url.trim().is_empty() {
            tracing::info!(task_id = %completion.task_id, "no completion_callback given; nothing to call");
            return;
        }
        let pending = PendingCompletion {
            url,
            completion,
            attempts: 0,
        };
        let file = workspace.join(PENDING_COMPLETION);
        if let Err(error) = save(&file, &pending) {
            tracing::warn!(%error, "could not persist the pending completion; delivering from memory");
        }
        self.spawn_delivery(file, pending);
    }

    /// Resumes every pending completion under `storage_dir` (after a restart).
    pub fn resume(&self, storage_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(storage_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.path().join(PENDING_COMPLETION);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            match serde_json::from_slice::<PendingCompletion>(&bytes) {
                Ok(pending) => {
                    tracing::info!(task_id = %pending.completion.task_id, attempts = pending.attempts, "resuming a completion callback not delivered before the restart");
                    self.spawn_delivery(file, pending);
                }
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "unreadable pending completion; removing it");
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
    }

    fn spawn_delivery(&self, file: PathBuf, mut pending: PendingCompletion) {
        let sender = self.clone();
        tokio::spawn(async move {
            loop {
                let attempt = pending.attempts + 1;
                match sender
                    .client
                    .complete_once(&pending.url, &pending.completion)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(task_id = %pending.completion.task_id, status = %pending.completion.status, attempt, "completion delivered");
                        break;
                    }
                    Err(error @ ManagerError::Refused { .. }) => {
                        tracing::error!(task_id = %pending.completion.task_id, %error, reason = "callback_origin", "completion callback refused; not sending it");
                        break;
                    }
                    Err(error) => {
                        pending.attempts = attempt;
                        if attempt > sender.retries {
                            tracing::error!(task_id = %pending.completion.task_id, %error, attempts = attempt, "completion callback failed; giving up");
                            break;
                        }
                        let delay = sender.delay(attempt);
                        tracing::warn!(task_id = %pending.completion.task_id, %error, attempt, retry_in_s = delay.as_secs_f64(), "completion callback failed; retrying");
                        if let Err(error) = save(&file, &pending) {
                            tracing::warn!(%error, "could not persist the completion's attempt count");
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            let _ = std::fs::remove_file(&file);
        });
    }
}

fn save(file: &Path, pending: &PendingCompletion) -> Result<(), WriteError> {
    let bytes = serde_json::to_vec_pretty(pending).unwrap_or_default();
    write_atomic(file, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_by_half() {
        let client = ManagerClient::new("http://127.0.0.1:9", "t", "1.7.1").expect("client");
        let sender = CompletionSender::new(client, 5, Duration::from_secs(60));
        let delays: Vec<u64> = (1..=5).map(|n| sender.delay(n).as_secs()).collect();
        assert_eq!(delays, [60, 90, 135, 202, 303]);
    }
}
