//! The channel, rollout, auto-halt, soak-gate and re-signing logic of [`App`], against the
//! in-memory store, with real keys, real signatures and real documents.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use manifests::{
    Artifact, DocType, Key, PrivateKey, Release, Role, Roles, Root, Signed, Timestamp, Version,
};
use sha2::{Digest, Sha256};

use super::App;
use crate::api::{ChannelSummary, PromoteRequest, ReportRequest};
use crate::config::ServeConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::store::memory::MemoryStore;

const PLATFORM: &str = "x86_64-unknown-linux-gnu";

/// A server on a temporary data directory and an in-memory store, with the offline release key
/// at hand.
struct Server {
    app: App,
    store: Arc<MemoryStore>,
    release_key: PrivateKey,
    _dir: tempfile::TempDir,
}

fn key_entry(key: &PrivateKey) -> (String, Key) {
    let public = key.public();
    (
        public.keyid,
        Key {
            scheme: public.scheme,
            public: public.public,
            extra: BTreeMap::new(),
        },
    )
}

impl Server {
    /// Keys and root version 1 generated, then the server opened with `tune`d defaults.
    fn start(tune: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root_key = PrivateKey::generate("root").expect("root key");
        let release_key = PrivateKey::generate("release").expect("release key");
        let channel_key = PrivateKey::generate("channel").expect("channel key");
        let (channel_key_path, _) = channel_key
            .write_pair(dir.path())
            .expect("channel key file");
        let root = Root {
            doc_type: DocType::Root,
            version: 1,
            expires: Timestamp::now().plus_secs(365 * 86_400),
            keys: [&root_key, &release_key, &channel_key]
                .into_iter()
                .map(key_entry)
                .collect(),
            roles: Roles {
                root: Role::new(vec![root_key.keyid()], 1),
                release: Role::new(vec![release_key.keyid()], 1),
                channel: Role::new(vec![channel_key.keyid()], 1),
                extra: BTreeMap::new(),
            },
            extra: BTreeMap::new(),
        };
        let root = Signed::sign(root, &[&root_key]).expect("sign root");
        let root_path = dir.path().join("root.json");
        std::fs::write(&root_path, root.to_json_pretty().expect("root json")).expect("root file");
        let admin_tokens = dir.path().join("admin.tokens");
        let worker_tokens = dir.path().join("worker.tokens");
        std::fs::write(&admin_tokens, "ops=3f9a61c2d84e07b5a1c6e2f8d9b40a73\n").expect("tokens");
        std::fs::write(&worker_tokens, "fleet=8b27e4d1c05f9a36e7b2d4c1f08a5e96\n").expect("tokens");
        let mut config = ServeConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            database_url: None,
            root: root_path,
            channel_key: channel_key_path,
            admin_token_file: admin_tokens,
            worker_token_file: Some(worker_tokens),
            viewer_token_file: None,
            soak: Duration::ZERO,
            promote_max_failure_rate: 0.05,
            statement_ttl: Duration::from_secs(86_400),
            resign_before: None,
            poll_interval: Duration::from_secs(60),
            long_poll_max: Duration::from_secs(60),
            auto_halt_failures: 3,
            auto_halt_ratio: 0.2,
            auto_halt_min_tried: 5,
            stale_after: Duration::from_secs(900),
            max_artifact_bytes: 1 << 20,
            tls_cert: None,
            tls_key: None,
            drain_timeout: Duration::from_secs(1),
            allow_weaker: false,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            max_body_bytes: 1 << 20,
            worker_rate_limit: 600,
            worker_rate_burst: 100,
            report_retention: Duration::from_secs(90 * 86_400),
            worker_retention: Duration::from_secs(30 * 86_400),
            prune_interval: Duration::from_secs(3600),
        };
        tune(&mut config);
        let store = Arc::new(MemoryStore::new());
        let app = App::open(config, store.clone()).expect("server opens");
        Server {
            app,
            store,
            release_key,
            _dir: dir,
        }
    }

    /// A server with defaults whose canary channel offers release `version` to every worker.
    async fn offering_on_canary(version: &str) -> Self {
        let server = Server::start(|_| {});
        server.publish(version).await;
        server
            .promote("canary", version, 100)
            .await
            .expect("promote");
        server
    }

    /// Asserts the canary channel was halted by auto-halt, with a reason starting `auto-halt: {counts}`.
    async fn assert_auto_halted(&self, counts: &str) -> ChannelSummary {
        let channel = self.channel("canary").await;
        assert!(channel.halted, "auto-halt at {counts}");
        assert!(
            channel
                .halt_reason
                .starts_with(&format!("auto-halt: {counts}")),
            "{}",
            channel.halt_reason
        );
        channel
    }

    /// Signs release `version` (one artifact), publishes it and uploads its artifact.
    async fn publish(&self, version: &str) {
        let binary = format!("worker-agent {version}").into_bytes();
        let sha256 = hex::encode(Sha256::digest(&binary));
        let release = Release {
            doc_type: DocType::Release,
            product: manifests::PRODUCT.to_owned(),
            version: version.parse().expect("version"),
            released_at: Timestamp::now(),
            minimum_version: Version::new(0, 0, 0),
            artifacts: vec![Artifact {
                platform: PLATFORM.to_owned(),
                sha256: sha256.clone(),
                size: binary.len() as u64,
                url: format!("artifacts/{sha256}"),
                mirrors: Vec::new(),
                deltas: Vec::new(),
                extra: BTreeMap::new(),
            }],
            notes: String::new(),
            extra: BTreeMap::new(),
        };
        let signed = Signed::sign(release, &[&self.release_key]).expect("sign release");
        let body = Bytes::from(signed.to_json_pretty().expect("release json"));
        let published = self
            .app
            .publish_release(body, "ops")
            .await
            .expect("release published");
        assert!(published.newly_stored);
        let mut staged =
            tempfile::NamedTempFile::new_in(self.app.incoming_dir()).expect("staged upload");
        staged.write_all(&binary).expect("upload written");
        self.app
            .commit_artifact(staged, &sha256, binary.len() as u64)
            .await
            .expect("artifact stored");
    }

    async fn promote(&self, channel: &str, version: &str, percent: u8) -> Result<ChannelSummary> {
        self.promote_with(channel, version, percent, false, "")
            .await
    }

    async fn promote_with(
        &self,
        channel: &str,
        version: &str,
        percent: u8,
        override_gate: bool,
        reason: &str,
    ) -> Result<ChannelSummary> {
        let request = PromoteRequest {
            version: version.to_owned(),
            percent: Some(percent),
            reason: reason.to_owned(),
            override_gate,
            minimum_version: None,
            urgent: false,
            first_wave: None,
            max_in_flight: None,
        };
        self.app.promote(channel, request, "ops").await
    }

    /// `worker` reports `outcome` (with `reason`) for `version` on `channel`.
    async fn report(
        &self,
        channel: &str,
        worker: &str,
        version: &str,
        outcome: &str,
        reason: &str,
    ) {
        let request = ReportRequest {
            worker_id: worker.to_owned(),
            correlation_id: format!("{worker}-{version}"),
            from_version: "0.9.0".to_owned(),
            to_version: version.to_owned(),
            outcome: outcome.to_owned(),
            reason: reason.to_owned(),
            duration_ms: 1200,
            at: Timestamp::now().to_string(),
            channel: Some(channel.to_owned()),
        };
        self.app.report(request).await.expect("report accepted");
    }

    /// The channel as the admin status shows it.
    async fn channel(&self, channel: &str) -> ChannelSummary {
        let status = self.app.status().await.expect("status");
        let channels: Vec<ChannelSummary> =
            serde_json::from_value(status["channels"].clone()).expect("channel summaries");
        channels
            .into_iter()
            .find(|c| c.channel == channel)
            .unwrap_or_else(|| panic!("channel {channel} is served"))
    }

    /// What a worker on `channel` running `version` is served.
    fn latest(&self, channel: &str, version: &str) -> serde_json::Value {
        let body = self
            .app
            .latest_body(channel, &version.parse().expect("version"));
        serde_json::from_slice(&body.body).expect("latest body is JSON")
    }
}

fn assert_refused(result: Result<ChannelSummary>, reason: &str, kind: ErrorKind) -> Error {
    let error = result.expect_err("refused");
    assert_eq!(error.reason(), reason, "{error}");
    assert_eq!(error.kind(), kind, "{error}");
    error
}

#[tokio::test]
async fn the_serial_only_grows_across_promotes_halts_and_resumes() {
    let server = Server::start(|_| {});
    server.publish("1.0.0").await;
    server.publish("1.1.0").await;
    let mut served = Vec::new();
    // Promote, widen, promote the next release.
    for (version, percent) in [("1.0.0", 10), ("1.0.0", 50), ("1.1.0", 10)] {
        let summary = server.promote("canary", version, percent).await;
        served.push(summary.expect("promote").serial);
    }
    served.push(
        server
            .app
            .halt("canary", "looks wrong", "ops")
            .await
            .expect("halt")
            .serial,
    );
    served.push(
        server
            .app
            .resume("canary", "looks fine", "ops")
            .await
            .expect("resume")
            .serial,
    );
    served.push(
        server
            .promote("canary", "1.0.0", 100)
            .await
            .expect("back")
            .serial,
    );
    assert_eq!(served, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(server.store.statement_serials("canary"), served);
    let latest = server.latest("canary", "0.9.0");
    assert_eq!(latest["channel"]["signed"]["serial"], 6);
    assert_eq!(latest["root_version"], 1);
    // Another channel counts on its own.
    let stable = server
        .promote_with("stable", "1.0.0", 100, true, "first stable")
        .await
        .expect("stable, gate overridden")
        .serial;
    assert_eq!(stable, 1);
}

#[tokio::test]
async fn the_rollout_salt_stays_while_the_release_stays() {
    let server = Server::start(|_| {});
    server.publish("1.0.0").await;
    server.publish("1.1.0").await;
    server
        .promote("canary", "1.0.0", 10)
        .await
        .expect("promote");
    let salt = |server: &Server| {
        server.latest("canary", "0.9.0")["channel"]["signed"]["rollout"]["salt"]
            .as_str()
            .expect("salt")
            .to_owned()
    };
    assert_eq!(salt(&server), "canary-1.0.0");
    server.promote("canary", "1.0.0", 60).await.expect("widen");
    assert_eq!(salt(&server), "canary-1.0.0", "the same workers stay in");
    server.promote("canary", "1.1.0", 10).await.expect("next");
    assert_eq!(salt(&server), "canary-1.1.0");
}

#[tokio::test]
async fn halt_and_resume_change_what_workers_are_offered() {
    let server = Server::start(|_| {});
    let nothing = server.app.halt("canary", "why not", "ops").await;
    let error = assert_refused(nothing, "not_found", ErrorKind::NotFound);
    assert!(
        matches!(error, Error::NothingToChange { ref channel, action: "halt" } if channel == "canary")
    );
    let nothing = server.app.resume("canary", "fixed", "ops").await;
    assert_refused(nothing, "not_found", ErrorKind::NotFound);
    // A resume needs a reason (the audit trail says why the rollout went on).
    let no_reason = server.app.resume("canary", " ", "ops").await;
    assert_refused(no_reason, "missing_reason", ErrorKind::Invalid);

    server.publish("1.0.0").await;
    let promoted = server
        .promote("canary", "1.0.0", 100)
        .await
        .expect("promote");
    assert!(!promoted.halted);
    let not_halted = server.app.resume("canary", "fixed", "ops").await;
    assert_refused(not_halted, "not_halted", ErrorKind::Refused);
    let no_reason = server.app.halt("canary", "  ", "ops").await;
    assert_refused(no_reason, "bad_request", ErrorKind::Invalid);

    let halted = server
        .app
        .halt("canary", "crash reports", "ops")
        .await
        .expect("halt");
    assert!(halted.halted);
    assert_eq!(halted.halt_reason, "crash reports");
    assert_eq!(halted.version, "1.0.0");
    assert_eq!(
        server.latest("canary", "0.9.0")["channel"]["signed"]["halted"],
        true
    );

    let resumed = server
        .app
        .resume("canary", "fixed", "ops")
        .await
        .expect("resume");
    assert!(!resumed.halted);
    assert_eq!(resumed.halt_reason, "");
    assert_eq!(
        server.latest("canary", "0.9.0")["channel"]["signed"]["halted"],
        false
    );

    // A promotion clears a halt too.
    server
        .app
        .halt("canary", "again", "ops")
        .await
        .expect("halt");
    let promoted = server
        .promote("canary", "1.0.0", 20)
        .await
        .expect("promote");
    assert!(!promoted.halted);
    assert_eq!(promoted.percent, 20);
}

#[tokio::test]
async fn promotion_refuses_what_cannot_be_offered() {
    let server = Server::start(|_| {});
    let unpublished = server.promote("canary", "2.0.0", 100).await;
    assert_refused(unpublished, "not_found", ErrorKind::NotFound);
    let too_much = server.promote("canary", "2.0.0", 101).await;
    assert_refused(too_much, "bad_request", ErrorKind::Invalid);
    let bad_name = server.promote("Canary!", "2.0.0", 100).await;
    assert_refused(bad_name, "bad_request", ErrorKind::Invalid);
    let bad_version = server.promote("canary", "two", 100).await;
    assert_refused(bad_version, "bad_request", ErrorKind::Invalid);
}

#[tokio::test]
async fn three_distinct_failing_workers_halt_the_channel() {
    let server = Server::offering_on_canary("1.0.0").await;
    server
        .report("canary", "w1", "1.0.0", "failure", "not_ready")
        .await;
    server
        .report("canary", "w1", "1.0.0", "failure", "not_ready")
        .await;
    server
        .report("canary", "w2", "1.0.0", "rolled_back", "died_in_probation")
        .await;
    assert!(
        !server.channel("canary").await.halted,
        "two distinct workers"
    );
    server
        .report("canary", "w3", "1.0.0", "rolled_back", "self_check_failed")
        .await;
    let channel = server
        .assert_auto_halted("3 of 3 workers that tried 1.0.0 on canary failed")
        .await;
    assert_eq!(channel.serial, 2, "one statement for the halt");
    assert_eq!(
        server.latest("canary", "0.9.0")["channel"]["signed"]["halted"],
        true
    );
}

#[tokio::test]
async fn a_fifth_of_the_workers_that_tried_halts_once_five_tried() {
    let server = Server::offering_on_canary("1.0.0").await;
    for worker in ["w1", "w2", "w3"] {
        server
            .report("canary", worker, "1.0.0", "success", "")
            .await;
    }
    server
        .report("canary", "w4", "1.0.0", "failure", "not_ready")
        .await;
    assert!(
        !server.channel("canary").await.halted,
        "1 of 4 tried: too few tried"
    );
    server.report("canary", "w5", "1.0.0", "success", "").await;
    server
        .report("canary", "w6", "1.0.0", "failure", "not_ready")
        .await;
    server.assert_auto_halted("2 of 6").await;
}

#[tokio::test]
async fn one_failure_of_five_tried_is_a_fifth() {
    let server = Server::offering_on_canary("1.0.0").await;
    for worker in ["w1", "w2", "w3", "w4"] {
        server
            .report("canary", worker, "1.0.0", "success", "")
            .await;
    }
    server
        .report("canary", "w5", "1.0.0", "rolled_back", "died_in_probation")
        .await;
    server.assert_auto_halted("1 of 5").await;
}

/// An agent stopped (SIGINT/SIGTERM) while a release was in probation reports `deferred` /
/// `probation_interrupted`: no verdict on the release, so neither a failure nor an attempt.
#[tokio::test]
async fn interrupted_probations_neither_halt_nor_count_as_tried() {
    let server = Server::offering_on_canary("1.0.0").await;
    for worker in ["w1", "w2", "w3", "w4", "w5"] {
        server
            .report(
                "canary",
                worker,
                "1.0.0",
                "deferred",
                "probation_interrupted",
            )
            .await;
    }
    assert!(!server.channel("canary").await.halted);
    for worker in ["w1", "w2", "w3", "w4"] {
        server
            .report("canary", worker, "1.0.0", "success", "")
            .await;
    }
    server
        .report("canary", "w6", "1.0.0", "rolled_back", "died_in_probation")
        .await;
    // w5, only interrupted, is not among those that tried.
    server.assert_auto_halted("1 of 5").await;
}

#[tokio::test]
async fn refusals_that_are_not_the_release_s_fault_do_not_halt() {
    let server = Server::offering_on_canary("1.0.0").await;
    for (worker, reason) in [
        ("w1", "downgrade"),
        ("w2", "needs_hop"),
        ("w3", "wrong_platform"),
        ("w4", "hash_mismatch"),
        ("w5", "no_space"),
        ("w6", "expired"),
        ("w7", "download"),
        ("w8", "http_503"),
        ("w9", "made_up"),
    ] {
        server
            .report("canary", worker, "1.0.0", "failure", reason)
            .await;
    }
    for worker in ["w10", "w11", "w12"] {
        server
            .report("canary", worker, "1.0.0", "deferred", "busy")
            .await;
    }
    assert!(!server.channel("canary").await.halted);
    // Failures of a release the channel no longer offers do not halt it either.
    server.publish("1.1.0").await;
    server
        .promote("canary", "1.1.0", 100)
        .await
        .expect("promote");
    for worker in ["w1", "w2", "w3"] {
        server
            .report(
                "canary",
                worker,
                "1.0.0",
                "rolled_back",
                "died_in_probation",
            )
            .await;
    }
    assert!(!server.channel("canary").await.halted);
}

#[tokio::test]
async fn the_stable_gate_needs_a_soaked_successful_canary() {
    let server = Server::start(|config| config.soak = Duration::from_secs(3600));
    server.publish("1.0.0").await;

    let error = assert_refused(
        server.promote("stable", "1.0.0", 100).await,
        "soak",
        ErrorKind::Refused,
    );
    assert!(matches!(error, Error::NeverOnCanary { .. }), "{error}");

    server
        .promote("canary", "1.0.0", 100)
        .await
        .expect("canary");
    let error = assert_refused(
        server.promote("stable", "1.0.0", 100).await,
        "soak",
        ErrorKind::Refused,
    );
    assert!(
        matches!(error, Error::SoakTooShort { soak: 3600, .. }),
        "{error}"
    );

    server.store.age_promotions("canary", "1.0.0", 7200);
    let error = assert_refused(
        server.promote("stable", "1.0.0", 100).await,
        "soak",
        ErrorKind::Refused,
    );
    assert!(matches!(error, Error::NoCanarySuccess { .. }), "{error}");

    server.report("canary", "w1", "1.0.0", "success", "").await;
    server
        .report("canary", "w2", "1.0.0", "failure", "not_ready")
        .await;
    server
        .report("canary", "w3", "1.0.0", "failure", "downgrade")
        .await;
    let error = assert_refused(
        server.promote("stable", "1.0.0", 100).await,
        "failure_rate",
        ErrorKind::Refused,
    );
    assert!(
        matches!(
            error,
            Error::CanaryFailureRate {
                failed: 1,
                tried: 2,
                ..
            }
        ),
        "the downgrade refusal is not counted: {error}"
    );
    for worker in 4..=22 {
        let worker = format!("w{worker}");
        server
            .report("canary", &worker, "1.0.0", "success", "")
            .await;
    }
    let stable = server
        .promote("stable", "1.0.0", 100)
        .await
        .expect("1 of 21 is below 5%");
    assert_eq!(stable.version, "1.0.0");
}

#[tokio::test]
async fn overriding_the_stable_gate_needs_a_reason() {
    let server = Server::start(|config| config.soak = Duration::from_secs(3600));
    server.publish("1.0.0").await;
    let no_reason = server.promote_with("stable", "1.0.0", 100, true, " ").await;
    let error = assert_refused(no_reason, "bad_request", ErrorKind::Invalid);
    assert!(
        matches!(error, Error::OverrideWithoutReason { .. }),
        "{error}"
    );
    let stable = server
        .promote_with("stable", "1.0.0", 100, true, "hotfix for the outage")
        .await
        .expect("overridden");
    assert_eq!(stable.version, "1.0.0");
    let audit = server
        .app
        .audit(crate::store::AuditFilter::newest(10))
        .await
        .expect("audit");
    let details: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"serial 1: 1.0.0 at 100% (gate overridden): hotfix for the outage"),
        "{details:?}"
    );
}

#[tokio::test]
async fn statements_are_re_signed_before_they_expire() {
    let mut server = Server::start(|config| config.statement_ttl = Duration::from_secs(3600));
    server.publish("1.0.0").await;
    let promoted = server
        .promote("canary", "1.0.0", 40)
        .await
        .expect("promote");

    // 1 h left, the margin is a quarter of the TTL: nothing is due.
    server.app.resign_due().await;
    assert_eq!(server.channel("canary").await.serial, promoted.serial);

    // A margin longer than what is left: due now.
    server.app.config.resign_before = Some(Duration::from_secs(7200));
    server.app.resign_due().await;
    let resigned = server.channel("canary").await;
    assert_eq!(resigned.serial, promoted.serial + 1);
    assert_eq!(resigned.version, "1.0.0");
    assert_eq!(resigned.percent, 40);
    let expires =
        |summary: &ChannelSummary| -> Timestamp { summary.expires.parse().expect("expiry") };
    assert!(expires(&resigned) >= expires(&promoted));
    let latest = server.latest("canary", "0.9.0");
    assert_eq!(latest["channel"]["signed"]["serial"], resigned.serial);
    assert_eq!(server.store.statement_serials("canary"), vec![1, 2]);
}
