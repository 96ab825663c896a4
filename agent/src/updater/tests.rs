use std::collections::BTreeMap;
use std::sync::Mutex;

use clap::Parser;
use manifests::{
    Artifact, ChannelStatement, DocType, Key, PrivateKey, Release, ReleasePointer, Role, Roles,
    Rollout, Root, Signed,
};

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    config: AgentConfig,
}

/// What the updater told its observer.
#[derive(Debug, Default)]
struct Seen {
    attempts: Mutex<Vec<Version>>,
    failures: Mutex<Vec<(Version, FailureReason)>>,
}

impl UpdateObserver for Seen {
    fn attempt_started(&self, version: &Version) {
        self.attempts.lock().expect("lock").push(version.clone());
    }
    fn attempt_failed(&self, version: &Version, reason: FailureReason) {
        let mut failures = self.failures.lock().expect("lock");
        failures.push((version.clone(), reason));
    }
}

fn key_entry(key: &PrivateKey) -> (String, Key) {
    let public = key.public();
    let key = Key {
        scheme: public.scheme,
        public: public.public,
        extra: BTreeMap::new(),
    };
    (public.keyid, key)
}

/// An agent running 1.0.0 with a fresh state directory, its trust rooted in new keys.
struct Fixture {
    dir: tempfile::TempDir,
    release_key: PrivateKey,
    channel_key: PrivateKey,
    /// The artifact's bytes, served at `artifact_url`.
    artifact: Vec<u8>,
    artifact_url: String,
    state: StateDir,
    updater: Updater,
    seen: Arc<Seen>,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root_key = PrivateKey::generate("root").expect("key");
        let release_key = PrivateKey::generate("release").expect("key");
        let channel_key = PrivateKey::generate("channel").expect("key");
        let root = Root {
            doc_type: DocType::Root,
            version: 1,
            expires: Timestamp::now().plus_secs(86_400),
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
        std::fs::write(&root_path, root.to_json_pretty().expect("json")).expect("root");

        let artifact = b"#!/bin/sh\necho version 2\n".repeat(100);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new().route(
            "/artifact",
            axum::routing::get({
                let bytes = artifact.clone();
                move || async move { bytes }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });

        let install_dir = dir.path().join("install");
        std::fs::create_dir_all(&install_dir).expect("install dir");
        let install_path = install_dir.join("worker-agent");
        std::fs::write(&install_path, b"version 1").expect("install");
        let state_dir = dir.path().join("state");
        let config = Cli::try_parse_from([
            "worker-agent",
            "--update-server",
            &base,
            "--token",
            "t",
            "--root",
            &root_path.to_string_lossy(),
            "--state-dir",
            &state_dir.to_string_lossy(),
            "--long-poll",
            "false",
            "--download-attempts",
            "1",
        ])
        .expect("agent arguments")
        .config;
        let state = StateDir::open(&state_dir).expect("state dir");
        let seen = Arc::new(Seen::default());
        let session = WorkerSession {
            state: state.clone(),
            client: UpdateClient::new(&config).expect("client"),
            telemetry: Arc::new(Telemetry::new(state.clone(), "1.0.0")),
            worker_id: "worker-1".to_owned(),
            version: "1.0.0".parse().expect("version"),
            platform: manifests::BUILD_PLATFORM.to_owned(),
        };
        let updater = Updater::new(
            config.clone(),
            session,
            TaskGate::new(),
            install_path,
            Duration::from_secs(60),
        )
        .expect("updater")
        .with_observer(seen.clone());
        Fixture {
            artifact_url: format!("{base}/artifact"),
            dir,
            release_key,
            channel_key,
            artifact,
            state,
            updater,
            seen,
        }
    }

    /// A signed release of `version` whose artifact is the served one.
    fn release(&self, version: &str) -> Signed<Release> {
        let (sha256, size) = (
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&self.artifact)),
            self.artifact.len() as u64,
        );
        let release = Release {
            doc_type: DocType::Release,
            product: manifests::PRODUCT.to_owned(),
            version: version.parse().expect("version"),
            released_at: Timestamp::now(),
            minimum_version: "0.0.0".parse().expect("version"),
            artifacts: vec![Artifact {
                platform: manifests::BUILD_PLATFORM.to_owned(),
                sha256,
                size,
                url: self.artifact_url.clone(),
                mirrors: Vec::new(),
                deltas: Vec::new(),
                extra: BTreeMap::new(),
            }],
            notes: String::new(),
            extra: BTreeMap::new(),
        };
        Signed::sign(release, &[&self.release_key]).expect("sign release")
    }

    /// `/latest` offering `release` to the whole `stable` channel at `serial`, the
    /// statement signed by `signer`.
    fn latest(&self, serial: u64, release: &Signed<Release>, signer: &PrivateKey) -> Latest {
        let now = Timestamp::now();
        let version = release.signed.version.clone();
        let statement = ChannelStatement {
            doc_type: DocType::Channel,
            channel: "stable".to_owned(),
            serial,
            issued_at: now,
            expires: now.plus_secs(86_400),
            release: ReleasePointer {
                version: version.clone(),
                manifest_sha256: release.signed_sha256().expect("hash"),
                extra: BTreeMap::new(),
            },
            rollout: Rollout {
                percent: 100,
                salt: "salt".to_owned(),
                wave: None,
                extra: BTreeMap::new(),
            },
            minimum_version: "0.0.0".parse().expect("version"),
            recommended_version: version,
            halted: false,
            urgent: false,
            extra: BTreeMap::new(),
        };
        Latest {
            root_version: 1,
            channel: Some(Signed::sign(statement, &[signer]).expect("sign statement")),
            release: Some(release.clone()),
            rollback: None,
            poll_interval_s: 60,
        }
    }

    /// Decides on `latest` as a poll that returned it does (`check_once`).
    async fn decide(&mut self, latest: Latest) -> Result<bool, UpdateFailure> {
        self.updater.latest = Some(latest.clone());
        self.updater.decide_and_apply(latest).await
    }

    fn attempts(&self) -> Vec<Version> {
        self.seen.attempts.lock().expect("lock").clone()
    }

    fn outbox(&self) -> Vec<OutcomeRecord> {
        let outcomes = self.state.outcomes().expect("outbox");
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }
}

#[tokio::test]
async fn a_newer_release_offered_to_everyone_is_downloaded_verified_and_staged() {
    let mut fixture = Fixture::new().await;
    let release = fixture.release("2.0.0");
    let latest = fixture.latest(1, &release, &fixture.channel_key);
    let staged = fixture.decide(latest).await;
    assert_eq!(staged, Ok(true));
    assert_eq!(fixture.attempts(), ["2.0.0".parse::<Version>().expect("v")]);
    let pending = fixture.state.pending().expect("readable").expect("pending");
    assert_eq!(pending.to_version.to_string(), "2.0.0");
    assert_eq!(pending.from_version.to_string(), "1.0.0");
    assert_eq!(pending.probation_attempts, 0);
    assert_eq!(
        std::fs::read(&pending.staged_path).expect("staged file"),
        fixture.artifact
    );
    assert!(pending
        .staged_path
        .starts_with(fixture.dir.path().join("install")));
    let trust = fixture
        .state
        .load_trust(&fixture.updater.config.root, "stable")
        .expect("trust");
    assert_eq!(trust.accepted_serial, Some(1));
    assert!(fixture.outbox().is_empty(), "nothing to report yet");
}

#[tokio::test]
async fn the_running_version_on_offer_is_nothing_to_do_but_its_statement_is_accepted() {
    let mut fixture = Fixture::new().await;
    let release = fixture.release("1.0.0");
    let latest = fixture.latest(4, &release, &fixture.channel_key);
    assert_eq!(fixture.decide(latest).await, Ok(false));
    assert!(fixture.attempts().is_empty());
    assert!(fixture.state.pending().expect("readable").is_none());
    let trust = fixture
        .state
        .load_trust(&fixture.updater.config.root, "stable")
        .expect("trust");
    assert_eq!(trust.accepted_serial, Some(4));
}

#[tokio::test]
async fn a_forged_statement_is_rejected_counted_each_time_and_reported_once_per_release_and_reason()
{
    let mut fixture = Fixture::new().await;
    let release = fixture.release("2.0.0");
    // Signed by the release key: not a key of the channel role.
    let forged = fixture.latest(1, &release, &fixture.release_key);
    for _ in 0..3 {
        let decided = fixture.decide(forged.clone()).await;
        assert_eq!(decided, Ok(false));
    }
    assert!(fixture.attempts().is_empty(), "nothing downloaded");
    let reported = fixture.outbox();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].outcome, Outcome::Failure);
    assert_eq!(reported[0].to_version, "2.0.0");
    assert_eq!(reported[0].reason, "threshold");
    let counters = fixture.state.counters().expect("counters");
    assert_eq!(
        counters.failures,
        BTreeMap::from([("threshold".to_owned(), 3)])
    );
    assert!(
        fixture.updater.rejections.remaining(Instant::now()) >= Some(Duration::from_secs(60 * 4)),
        "the third refusal in a row backs off 4 minutes or more"
    );

    // Another statement (a new serial) with the same problem is no new report: a hostile
    // server minting serials gets one report per release and reason.
    let forged_again = fixture.latest(2, &release, &fixture.release_key);
    let decided = fixture.decide(forged_again).await;
    assert_eq!(decided, Ok(false));
    assert_eq!(fixture.outbox().len(), 1);
    let counters = fixture.state.counters().expect("counters");
    assert_eq!(counters.failures.get("threshold"), Some(&4));
    let trust = fixture
        .state
        .load_trust(&fixture.updater.config.root, "stable")
        .expect("trust");
    assert_eq!(
        trust.accepted_serial, None,
        "a forged statement is never accepted"
    );

    // A genuine statement ends the backoff.
    let genuine = fixture.latest(3, &fixture.release("1.0.0"), &fixture.channel_key);
    assert_eq!(fixture.decide(genuine).await, Ok(false));
    assert_eq!(fixture.updater.rejections.remaining(Instant::now()), None);
}

#[tokio::test]
async fn a_genuine_release_for_another_platform_is_counted_once_and_kept_without_backoff() {
    let mut fixture = Fixture::new().await;
    let mut release = fixture.release("2.0.0");
    release.signed.artifacts[0].platform = "other-platform".to_owned();
    let release = Signed::sign(release.signed, &[&fixture.release_key]).expect("sign");
    let latest = fixture.latest(1, &release, &fixture.channel_key);
    for _ in 0..3 {
        assert_eq!(fixture.decide(latest.clone()).await, Ok(false));
    }
    let counters = fixture.state.counters().expect("counters");
    assert_eq!(counters.failures.get("wrong_platform"), Some(&1));
    assert_eq!(fixture.outbox().len(), 1);
    assert_eq!(
        fixture.updater.rejections.remaining(Instant::now()),
        None,
        "the server's long poll holds until something changes"
    );
}

#[tokio::test]
async fn the_workers_own_failure_reports_stop_at_the_outbox_limit() {
    let mut fixture = Fixture::new().await;
    for i in 0..retry::OUTBOX_LIMIT + 5 {
        let release = fixture.release(&format!("2.0.{i}"));
        let forged = fixture.latest(1, &release, &fixture.release_key);
        assert_eq!(fixture.decide(forged).await, Ok(false));
    }
    assert_eq!(fixture.outbox().len(), retry::OUTBOX_LIMIT);
    let counters = fixture.state.counters().expect("counters");
    let counted = u64::try_from(retry::OUTBOX_LIMIT + 5).expect("small");
    assert_eq!(
        counters.failures.get("threshold"),
        Some(&counted),
        "dropped reports are still counted"
    );
}

#[tokio::test]
async fn a_quarantined_version_is_not_installed_again() {
    let mut fixture = Fixture::new().await;
    let release = fixture.release("2.0.0");
    handover::quarantine(&fixture.state, &release.signed.version);
    let latest = fixture.latest(1, &release, &fixture.channel_key);
    assert_eq!(fixture.decide(latest).await, Ok(false));
    assert!(fixture.attempts().is_empty());
    assert!(fixture.state.pending().expect("readable").is_none());
    assert!(fixture.outbox().is_empty());

    // A newer release is installed.
    let newer = fixture.release("2.0.1");
    let latest = fixture.latest(2, &newer, &fixture.channel_key);
    assert_eq!(fixture.decide(latest).await, Ok(true));
    assert_eq!(fixture.attempts(), ["2.0.1".parse::<Version>().expect("v")]);
}

#[tokio::test]
async fn an_artifact_that_does_not_match_its_release_condemns_its_sources_for_a_while() {
    let mut fixture = Fixture::new().await;
    // A short backoff, so the test sees it end.
    fixture.updater.condemned = SourceVerdicts::new(Duration::from_millis(500));
    let mut release = fixture.release("2.0.0");
    release.signed.artifacts[0].sha256 = "0".repeat(64);
    let release = Signed::sign(release.signed, &[&fixture.release_key]).expect("sign");
    let latest = fixture.latest(1, &release, &fixture.channel_key);
    for _ in 0..2 {
        let decided = fixture.decide(latest.clone()).await;
        assert_eq!(decided, Ok(false));
    }
    assert_eq!(
        fixture.attempts().len(),
        1,
        "both sources are avoided during their backoff"
    );
    // The signed URL's bytes do not match; the server's own copy (the fixture serves
    // none) is tried next, and answers 404.
    let reasons: BTreeSet<String> = fixture.outbox().into_iter().map(|o| o.reason).collect();
    assert_eq!(
        reasons,
        BTreeSet::from(["hash_mismatch".to_owned(), "http_404".to_owned()])
    );
    // After the backoff, the same bytes are tried again (not condemned forever), counted
    // again and not reported again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fixture.decide(latest.clone()).await, Ok(false));
    assert_eq!(fixture.attempts().len(), 2);
    assert_eq!(fixture.outbox().len(), 2);
    let counters = fixture.state.counters().expect("counters");
    assert_eq!(counters.failures.get("hash_mismatch"), Some(&2));
    assert!(fixture.state.pending().expect("readable").is_none());
    let install_dir = fixture.dir.path().join("install");
    let leftovers: Vec<_> = std::fs::read_dir(install_dir)
        .expect("install dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["worker-agent"],
        "no partial or staged file left"
    );
}
