//! `update-server`: a real server process on 127.0.0.1:0, real HTTP, real SQLite, real keys; the
//! main ones (`*_on_postgres`) again on a real PostgreSQL (`--database-url`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::fleet::{Api, Trust, PLATFORM};
use e2e::postgres::Backend;
use e2e::world::World;
use e2e::Sandbox;
use manifests::{
    ChannelStatement, Decision, Idle, LocalState, Release, Rollback, Signed, Timestamp, UpdateCheck,
};

/// Signs and publishes release `version` with a distinct artifact.
fn release(w: &World, version: &str) -> Signed<Release> {
    w.publish_written(
        version,
        &format!("artifacts/worker-agent-{version}"),
        format!("#!/bin/sh\necho {version}\n").repeat(5000),
    )
}

struct Offer {
    channel: Signed<ChannelStatement>,
    release: Signed<Release>,
    rollback: Option<Signed<Rollback>>,
}

fn offer(reply: &e2e::fleet::Reply) -> Offer {
    assert_eq!(reply.status, 200, "{}", reply.text());
    let value = reply.json();
    let parse = |field: &str| serde_json::to_vec(&value[field]).expect("json");
    Offer {
        channel: Signed::from_slice(&parse("channel")).expect("channel statement"),
        release: Signed::from_slice(&parse("release")).expect("release"),
        rollback: (!value["rollback"].is_null())
            .then(|| Signed::from_slice(&parse("rollback")).expect("rollback")),
    }
}

fn local(channel: &str, version: &str, worker_id: &str) -> LocalState {
    LocalState {
        product: manifests::PRODUCT.to_owned(),
        platform: PLATFORM.to_owned(),
        worker_id: worker_id.to_owned(),
        channel: channel.to_owned(),
        current_version: version.parse().expect("version"),
        accepted_serial: None,
        accepted_statement_sha256: None,
        quarantined: BTreeSet::new(),
    }
}

fn decide(trust: &Trust, offer: &Offer, local: &LocalState) -> Decision {
    UpdateCheck {
        root: &trust.trusted_root(),
        channel: &offer.channel,
        release: &offer.release,
        rollback: offer.rollback.as_ref(),
        ignore_cohort: false,
    }
    .decide(local, Timestamp::now())
}

#[test]
fn staged_rollout_reaches_exactly_the_cohort_then_everyone() {
    staged_rollout_reaches_exactly_the_cohort_then_everyone_on(Backend::Sqlite);
}

#[test]
fn staged_rollout_reaches_exactly_the_cohort_then_everyone_on_postgres() {
    staged_rollout_reaches_exactly_the_cohort_then_everyone_on(Backend::Postgres);
}

fn staged_rollout_reaches_exactly_the_cohort_then_everyone_on(backend: Backend) {
    let args = backend.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = World::builder().server_args(&args).start();
    release(&w, "1.1.0");
    w.server.promote("canary", "1.1.0", 10);
    let worker = w.server.worker();
    let ids: Vec<String> = (0..200).map(|i| format!("worker-{i:03}")).collect();
    let mut installing = Vec::new();
    for id in &ids {
        let offer = offer(&worker.latest("canary", "1.0.0", id));
        assert_eq!(offer.channel.signed.rollout.percent, 10);
        match decide(&w.trust, &offer, &local("canary", "1.0.0", id)) {
            Decision::Install { plan, .. } => {
                assert_eq!(plan.version.to_string(), "1.1.0");
                installing.push(id.clone());
            }
            Decision::NothingToDo {
                why: Idle::NotInCohort { percent: 10 },
                ..
            } => {}
            other => panic!("{id}: {other:?}"),
        }
        let expected = manifests::in_rollout(id, &offer.channel.signed.rollout.salt, 10);
        assert_eq!(
            installing.contains(id),
            expected,
            "{id}: agent and cohort function disagree"
        );
    }
    assert!(
        (8..=35).contains(&installing.len()),
        "10% of 200 gave {}",
        installing.len()
    );

    // Widening keeps the same salt: the first cohort stays in, more join.
    w.server.promote("canary", "1.1.0", 100);
    for id in &ids {
        let offer = offer(&worker.latest("canary", "1.0.0", id));
        assert!(
            matches!(
                decide(&w.trust, &offer, &local("canary", "1.0.0", id)),
                Decision::Install { .. }
            ),
            "{id} not offered at 100%"
        );
    }
    // The fleet inventory saw all of them.
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(status["workers_total"], 200);
    assert_eq!(status["fleet"][0]["version"], "1.0.0");
}

#[test]
fn bad_releases_and_artifacts_are_refused_with_their_reason() {
    let w = World::new();
    let admin = w.server.admin();
    let artifact = w
        .sandbox
        .write("a.bin", b"genuine artifact bytes".repeat(100));
    let (release, _) = w
        .trust
        .sign_release("2.0.0", "0.0.0", &[(PLATFORM, &artifact)]);
    let post = |doc: &Signed<Release>| {
        admin.post_bytes("/api/admin/releases", doc.to_json_pretty().expect("json"))
    };

    let mut unsigned = release.clone();
    unsigned.signatures.clear();
    let reply = post(&unsigned);
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("unsigned"))
    );

    let mut tampered = release.clone();
    tampered.signed.notes = "now with a backdoor".to_owned();
    let reply = post(&tampered);
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("bad_signature"))
    );

    let wrong_key = Signed::sign(release.signed.clone(), &[&w.trust.channel_key]).expect("sign");
    let reply = post(&wrong_key);
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("threshold"))
    );

    let reply = admin.post_bytes("/api/admin/releases", b"{not json".to_vec());
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("malformed"))
    );

    // An artifact nobody signed for.
    let stranger = "ab".repeat(32);
    let reply = admin.put_bytes(&format!("/api/admin/artifacts/{stranger}"), b"x".to_vec());
    assert_eq!(reply.status, 404, "{}", reply.text());

    assert_eq!(post(&release).status, 201);
    assert_eq!(post(&release).status, 200, "publishing twice is idempotent");
    let mut other = release.signed.clone();
    other.notes = "other content, same version".to_owned();
    let conflicting = Signed::sign(other, &[&w.trust.release_key]).expect("sign");
    assert_eq!(post(&conflicting).status, 409);

    let sha = &release.signed.artifacts[0].sha256;
    let path = format!("/api/admin/artifacts/{sha}");
    let reply = admin.put_bytes(
        &path,
        b"other bytes of the same length!!".repeat(69)[..2200].to_vec(),
    );
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("hash_mismatch"))
    );
    let reply = admin.put_bytes(
        &path,
        [std::fs::read(&artifact).expect("read"), b"extra".to_vec()].concat(),
    );
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("size_mismatch"))
    );
    let reply = admin.put_bytes(&path, b"short".to_vec());
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("size_mismatch"))
    );

    // Not promotable while incomplete; unknown versions are 404.
    let promote = |version: &str, channel: &str| {
        admin.post_json(
            &format!("/api/admin/channels/{channel}/promote"),
            &serde_json::json!({"version": version, "percent": 100}),
        )
    };
    let reply = promote("2.0.0", "canary");
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (409, Some("incomplete_release"))
    );
    assert_eq!(promote("9.9.9", "canary").status, 404);

    assert_eq!(
        admin
            .put_bytes(&path, std::fs::read(&artifact).expect("read"))
            .status,
        201
    );
    assert_eq!(
        admin
            .put_bytes(&path, std::fs::read(&artifact).expect("read"))
            .status,
        200
    );
    assert_eq!(promote("2.0.0", "canary").status, 200);

    // Stable is gated by the canary soak; an override needs a reason and is audited.
    let reply = promote("2.0.0", "stable");
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (409, Some("soak"))
    );
    let reply = admin.post_json(
        "/api/admin/channels/stable/promote",
        &serde_json::json!({"version": "2.0.0", "percent": 100, "override": true}),
    );
    assert_eq!(
        reply.status,
        400,
        "override without reason: {}",
        reply.text()
    );
    let reply = admin.post_json(
        "/api/admin/channels/stable/promote",
        &serde_json::json!({"version": "2.0.0", "percent": 100, "override": true, "reason": "CVE fix, canary skipped"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let audit = admin.get("/api/admin/audit?limit=20").text();
    assert!(
        audit.contains("gate overridden") && audit.contains("CVE fix, canary skipped"),
        "{audit}"
    );
}

#[test]
fn tokens_are_required_and_of_the_right_kind() {
    let w = World::new();
    let anonymous = Api::new(&w.server.url, None);
    let wrong = Api::new(&w.server.url, Some("0123456789abcdef0123456789abcdef"));
    for api in [&anonymous, &wrong] {
        assert_eq!(api.latest("stable", "1.0.0", "w").status, 401);
        assert_eq!(api.get("/api/admin/status").status, 401);
    }
    assert_eq!(w.server.worker().get("/api/admin/status").status, 403);
    assert_eq!(w.server.admin().latest("stable", "1.0.0", "w").status, 403);
    assert_eq!(anonymous.get("/healthz").status, 200);
    assert_eq!(anonymous.get("/metrics").status, 200);
}

/// The server's JSON log line `message` for the request `x-request-id` named, if logged.
fn logged_for(w: &World, message: &str, request_id: &str) -> Option<serde_json::Value> {
    w.server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["fields"]["message"] == message && line["fields"]["request_id"] == request_id
        })
}

#[test]
fn refused_requests_are_logged_with_their_request_id_the_poll_route_included() {
    let w = World::new();
    // The poll route has no request span: its refusal line must name the request itself.
    let poll = w.server.worker().latest("no-such-channel", "1.0.0", "w-1");
    assert_eq!(poll.status, 404, "{}", poll.text());
    let admin = w.server.worker().get("/api/admin/status");
    assert_eq!(admin.status, 403, "{}", admin.text());
    for (reply, path, reason) in [
        (&poll, "/api/worker-updates/latest", "unknown_channel"),
        (&admin, "/api/admin/status", "forbidden"),
    ] {
        let id = reply.headers.get("x-request-id").expect("x-request-id");
        let deadline = Instant::now() + Duration::from_secs(5);
        let line = loop {
            if let Some(line) = logged_for(&w, "request refused", id) {
                break line;
            }
            assert!(
                Instant::now() < deadline,
                "no refusal logged for {id}:\n{}",
                w.server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["fields"]["uri"], path, "{line}");
        assert_eq!(line["fields"]["method"], "GET", "{line}");
        let status = line["fields"]["status"].as_str().unwrap_or_default();
        assert!(status.starts_with(&format!("{} ", reply.status)), "{line}");
        assert_eq!(line["fields"]["reason"], reason, "{line}");
    }
}

#[test]
fn etag_long_poll_and_range_resume() {
    etag_long_poll_and_range_resume_on(Backend::Sqlite);
}

#[test]
fn etag_long_poll_and_range_resume_on_postgres() {
    etag_long_poll_and_range_resume_on(Backend::Postgres);
}

fn etag_long_poll_and_range_resume_on(backend: Backend) {
    let args = backend.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = World::builder()
        .server_args(&["--long-poll-max", "20s"])
        .server_args(&args)
        .start();
    let release = release(&w, "1.2.0");
    let worker = w.server.worker();
    let first = worker.latest("stable", "1.0.0", "poller");
    assert_eq!(first.status, 200);
    assert!(first.json()["channel"].is_null(), "nothing promoted yet");
    let etag = first.header("etag").expect("etag").to_owned();
    let path = "/api/worker-updates/latest?channel=stable&platform=p&current_version=1.0.0&worker_id=poller";
    let again = worker.send(reqwest::Method::GET, path, |r| {
        r.header("if-none-match", &etag)
    });
    assert_eq!(again.status, 304);

    // A long poll returns as soon as the channel changes.
    let long_path = format!("{path}&wait=20");
    let poller = {
        let worker = worker.clone();
        let etag = etag.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let reply = worker.send(reqwest::Method::GET, &long_path, |r| {
                r.header("if-none-match", &etag)
            });
            (reply, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(700));
    w.server.promote("stable", "1.2.0", 100);
    let (reply, waited) = poller.join().expect("poller");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["channel"]["signed"]["release"]["version"],
        "1.2.0"
    );
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(15),
        "waited {waited:?}"
    );
    // ...and times out with 304 when nothing changes.
    let etag = reply.header("etag").expect("etag").to_owned();
    let short = format!("{path}&wait=1");
    let started = Instant::now();
    let reply = worker.send(reqwest::Method::GET, &short, |r| {
        r.header("if-none-match", &etag)
    });
    assert_eq!(reply.status, 304);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Artifact download resumes with Range.
    let artifact = &release.signed.artifacts[0];
    let url = format!("/api/worker-updates/artifacts/{}", artifact.sha256);
    let whole = worker.get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let cut = 12_345;
    let rest = worker.send(reqwest::Method::GET, &url, |r| {
        r.header("range", format!("bytes={cut}-"))
    });
    assert_eq!(rest.status, 206);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes {cut}-{}/{}", artifact.size - 1, artifact.size).as_str())
    );
    let mut verifier = manifests::ArtifactVerifier::new(artifact, "resumed download");
    verifier.update(&whole.body[..cut]).expect("first part");
    verifier.update(&rest.body).expect("second part");
    verifier.finish().expect("resumed download verifies");
}

#[test]
fn everything_survives_kill_9_and_restart() {
    everything_survives_kill_9_and_restart_on(Backend::Sqlite);
}

#[test]
fn everything_survives_kill_9_and_restart_on_postgres() {
    everything_survives_kill_9_and_restart_on(Backend::Postgres);
}

fn everything_survives_kill_9_and_restart_on(backend: Backend) {
    let args = backend.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut w = World::builder().server_args(&args).start();
    let release = release(&w, "1.3.0");
    w.server.promote("canary", "1.3.0", 50);
    let worker = w.server.worker();
    let register = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": "w-1", "current_version": "1.0.0", "platform": PLATFORM,
                            "channel": "canary", "hostname": "encoder-1", "task_types": ["encoding"]}),
    );
    assert_eq!(register.status, 200, "{}", register.text());
    let report = worker.post_json(
        "/api/worker-updates/report",
        &serde_json::json!({"worker_id": "w-1", "correlation_id": "c-1", "from_version": "1.0.0",
            "to_version": "1.3.0", "outcome": "success", "reason": "", "duration_ms": 1234,
            "at": Timestamp::now().to_string()}),
    );
    assert_eq!(report.status, 202, "{}", report.text());
    let before = worker.latest("canary", "1.0.0", "w-1").json();

    w.server.crash_and_restart();

    let worker = w.server.worker();
    let after = worker.latest("canary", "1.0.0", "w-1").json();
    assert_eq!(
        before["channel"], after["channel"],
        "same statement served after restart"
    );
    let sha = &release.signed.artifacts[0].sha256;
    let reply = worker.get(&format!("/api/worker-updates/artifacts/{sha}"));
    let mut verifier =
        manifests::ArtifactVerifier::new(&release.signed.artifacts[0], "after restart");
    verifier
        .update(&reply.body)
        .expect("artifact bytes within the signed size");
    verifier
        .finish()
        .expect("the artifact served after a restart verifies");
    let audit = w.server.admin().get("/api/admin/audit").text();
    for expected in ["\"publish\"", "\"promote\"", "correlation c-1", "success"] {
        assert!(
            audit.contains(expected),
            "{expected} missing after restart: {audit}"
        );
    }
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(status["workers_total"], 1);
    // Serials keep growing after a restart.
    let next = w.server.promote("canary", "1.3.0", 100);
    assert_eq!(next["serial"], 2);
}

#[test]
fn failing_canaries_halt_the_channel_and_nobody_is_offered_the_release() {
    failing_canaries_halt_the_channel_and_nobody_is_offered_the_release_on(Backend::Sqlite);
}

#[test]
fn failing_canaries_halt_the_channel_and_nobody_is_offered_the_release_on_postgres() {
    failing_canaries_halt_the_channel_and_nobody_is_offered_the_release_on(Backend::Postgres);
}

fn failing_canaries_halt_the_channel_and_nobody_is_offered_the_release_on(backend: Backend) {
    let args = backend.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = World::builder().server_args(&args).start();
    release(&w, "1.4.0");
    w.server.promote("canary", "1.4.0", 100);
    let worker = w.server.worker();
    let fail = |id: &str, outcome: &str, reason: &str| {
        let reply = worker.post_json(
            "/api/worker-updates/report",
            &serde_json::json!({"worker_id": id, "correlation_id": format!("c-{id}"), "from_version": "1.3.0",
                "to_version": "1.4.0", "outcome": outcome, "reason": reason, "duration_ms": 10,
                "at": Timestamp::now().to_string(), "channel": "canary"}),
        );
        assert_eq!(reply.status, 202, "{}", reply.text());
    };
    fail("c1", "rolled_back", "died_in_probation");
    fail("c2", "rolled_back", "self_check_failed");
    // The same worker twice counts once; an agent refusing a downgrade or a mirror's bad bytes
    // is not a release defect.
    fail("c2", "rolled_back", "self_check_failed");
    fail("c3", "failure", "downgrade");
    fail("c5", "failure", "hash_mismatch");
    let offer_now = offer(&worker.latest("canary", "1.3.0", "c9"));
    assert!(
        !offer_now.channel.signed.halted,
        "two distinct failures must not halt yet"
    );
    fail("c4", "rolled_back", "exited_before_ready");
    let halted = offer(&worker.latest("canary", "1.3.0", "c9"));
    assert!(
        halted.channel.signed.halted,
        "three distinct failures halt the channel"
    );
    assert!(halted.channel.signed.serial > offer_now.channel.signed.serial);
    assert!(matches!(
        decide(&w.trust, &halted, &local("canary", "1.3.0", "c9")),
        Decision::NothingToDo {
            why: Idle::Halted,
            ..
        }
    ));
    let audit = w.server.admin().get("/api/admin/audit").text();
    assert!(
        audit.contains("auto_halt") && audit.contains("3 of"),
        "{audit}"
    );
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    assert!(
        metrics.contains("update_server_channel_halted{channel=\"canary\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("update_server_update_reports_total{outcome=\"rolled_back\",reason=\"died_in_probation\",version=\"1.4.0\"} 1"), "{metrics}");

    // Resume needs an admin; halt needs a reason.
    let admin = w.server.admin();
    assert_eq!(
        admin
            .post_json("/api/admin/channels/canary/halt", &serde_json::json!({}))
            .status,
        400
    );
    let resumed = admin.post_json(
        "/api/admin/channels/canary/resume",
        &serde_json::json!({"reason": "fixed"}),
    );
    assert_eq!(resumed.json()["halted"], false);
}

#[test]
fn statements_are_re_signed_before_they_expire() {
    let w = World::builder()
        .server_args(&["--statement-ttl", "6s", "--resign-before", "4s"])
        .start();
    release(&w, "1.5.0");
    let first = w.server.promote("stable", "1.5.0", 100);
    let worker = w.server.worker();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut serials = BTreeSet::new();
    while Instant::now() < deadline && serials.len() < 3 {
        let offer = offer(&worker.latest("stable", "1.0.0", "w"));
        // Every statement handed out verifies and is not expired.
        assert!(matches!(
            decide(&w.trust, &offer, &local("stable", "1.0.0", "w")),
            Decision::Install { .. }
        ));
        serials.insert(offer.channel.signed.serial);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        serials.len() >= 3,
        "re-signed serials seen: {serials:?} (first {})",
        first["serial"]
    );
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    assert!(
        metrics.contains(
            "update_server_channel_statement_expiry_timestamp_seconds{channel=\"stable\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn rollback_directive_is_served_to_the_versions_it_covers() {
    let w = World::new();
    release(&w, "1.0.0");
    release(&w, "1.1.0");
    w.server.promote("stable", "1.1.0", 100);
    let directive = w.trust.sign_rollback(&["1.1.0"], "1.0.0");
    let admin = w.server.admin();
    let reply = admin.post_json(
        "/api/admin/channels/stable/rollback",
        &serde_json::json!({"directive": directive, "reason": "1.1.0 breaks studio"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["rollback_to"], "1.0.0");
    let worker = w.server.worker();
    let covered = offer(&worker.latest("stable", "1.1.0", "w1"));
    assert!(covered.rollback.is_some());
    match decide(&w.trust, &covered, &local("stable", "1.1.0", "w1")) {
        Decision::Install { plan, .. } => {
            assert!(plan.is_rollback && plan.version.to_string() == "1.0.0")
        }
        other => panic!("{other:?}"),
    }
    // An agent on another version gets no directive, so it never moves down.
    let other = offer(&worker.latest("stable", "1.2.0", "w2"));
    assert!(other.rollback.is_none());
    assert_eq!(
        decide(&w.trust, &other, &local("stable", "1.2.0", "w2")).reason(),
        Some(manifests::Reason::Downgrade)
    );
    // A directive signed with the wrong key is refused.
    let forged = Signed::sign(directive.signed.clone(), &[&w.trust.channel_key]).expect("sign");
    let reply = admin.post_json(
        "/api/admin/channels/stable/rollback",
        &serde_json::json!({"directive": forged}),
    );
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("threshold"))
    );
}

#[test]
fn handshake_tells_workers_below_the_minimum_and_metrics_show_the_fleet() {
    let w = World::new();
    // The fleet gauges name only published versions (others count as `other`).
    for version in ["1.0.0", "1.6.0", "2.0.0"] {
        release(&w, version);
    }
    let reply = w.server.admin().post_json(
        "/api/admin/channels/canary/promote",
        &serde_json::json!({"version": "2.0.0", "minimum_version": "1.5.0"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let worker = w.server.worker();
    let register = |version: &str| {
        worker
            .post_json(
                "/api/workers/register",
                &serde_json::json!({"worker_id": format!("w-{version}"), "current_version": version,
                    "platform": PLATFORM, "channel": "canary", "hostname": "h", "task_types": ["encoding"]}),
            )
            .json()
    };
    let old = register("1.0.0");
    assert_eq!(
        (
            old["below_minimum"].as_bool(),
            old["minimum_version"].as_str()
        ),
        (Some(true), Some("1.5.0"))
    );
    assert_eq!(old["recommended_version"], "2.0.0");
    assert!(old["poll_interval_s"].as_u64().is_some());
    assert_eq!(register("1.6.0")["below_minimum"], false);
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    for expected in [
        "update_server_fleet_workers{channel=\"canary\",version=\"1.0.0\"} 1",
        "update_server_fleet_workers{channel=\"canary\",version=\"1.6.0\"} 1",
        "update_server_channel_rollout_ratio{channel=\"canary\"} 1",
        "update_server_channel_serial{channel=\"canary\"} 1",
        "update_server_http_requests_total{route=\"/api/workers/register\",status=\"200\"} 2",
        "update_server_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    // Logs are JSON lines carrying a request id.
    let log = w.server.log();
    let line = log
        .lines()
        .find(|l| l.contains("request_id"))
        .expect("a log line with a request id");
    serde_json::from_str::<serde_json::Value>(line).expect("JSON log line");
}

#[test]
fn root_rotation_is_published_and_served_as_a_chain() {
    let w = World::new();
    let mut next = w.trust.root.signed.clone();
    next.version = 2;
    let rotated = Signed::sign(next.clone(), &[&w.trust.root_key]).expect("sign");
    let admin = w.server.admin();
    let reply = admin.post_bytes("/api/admin/roots", rotated.to_json_pretty().expect("json"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["already_published"], false);
    // The same root again (a retried publish): success, "already published", nothing changes.
    let again = admin.post_bytes("/api/admin/roots", rotated.to_json_pretty().expect("json"));
    assert_eq!(
        (
            again.status,
            again.json()["version"].as_u64(),
            again.json()["already_published"].as_bool()
        ),
        (200, Some(2), Some(true)),
        "{}",
        again.text()
    );
    // Another root with the same version: refused with its reason, the trusted one stays.
    let mut other = next.clone();
    other.expires = other.expires.plus_secs(3600);
    let other = Signed::sign(other, &[&w.trust.root_key]).expect("sign");
    let conflict = admin.post_bytes("/api/admin/roots", other.to_json_pretty().expect("json"));
    assert_eq!(
        (conflict.status, conflict.json()["reason"].as_str()),
        (409, Some("root_conflict")),
        "{}",
        conflict.text()
    );
    let worker = w.server.worker();
    let served: Signed<manifests::Root> =
        Signed::from_slice(&worker.get("/api/worker-updates/root/2.json").body).expect("root 2");
    manifests::verify_rotation(&w.trust.trusted_root(), &served).expect("valid rotation");
    assert_eq!(
        worker.latest("stable", "1.0.0", "w").json()["root_version"],
        2
    );
    assert_eq!(worker.get("/api/worker-updates/root/3.json").status, 404);
    // Skipping a version is refused.
    next.version = 4;
    let skipping = Signed::sign(next, &[&w.trust.root_key]).expect("sign");
    let reply = admin.post_bytes("/api/admin/roots", skipping.to_json_pretty().expect("json"));
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (422, Some("root_version"))
    );
}

#[test]
fn configuration_errors_stop_start_up_with_one_clear_line() {
    let sb = Sandbox::new();
    let trust = Trust::new(sb.path());
    let good_token = e2e::fleet::token();
    sb.write("admin.tokens", format!("ops={good_token}\n"));
    sb.write("worker.tokens", format!("{}\n", e2e::fleet::token()));
    sb.write("placeholder.tokens", "ops=CHANGE_ME_please_change_me\n");
    sb.write("a-file", "not a directory");
    let root = trust.root_path.to_string_lossy().into_owned();
    let channel_key = trust.channel_key_path.to_string_lossy().into_owned();
    let release_key = trust.release_key_path.to_string_lossy().into_owned();
    // An encrypted channel key (`keygen --encrypt`): the server signs unattended, it refuses it.
    let passphrase = sb.write_secret("passphrase", "server has no one to ask\n");
    sb.release_cli_with_env(
        &["keygen", "--encrypt", "--out", "enc", "--name", "channel"],
        &[("WORKER_RELEASE_PASSPHRASE_FILE", &passphrase)],
    )
    .success();
    let run = |root: &str, key: &str, data: &str, admin: &str| {
        let run = sb.run(
            &e2e::bin("update-server"),
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data,
                "--root",
                root,
                "--channel-key",
                key,
                "--admin-token-file",
                admin,
                "--worker-token-file",
                "worker.tokens",
            ],
        );
        let err = run.failure();
        // A refused configuration exits 78 (EX_CONFIG), which the systemd unit does not restart.
        assert_eq!(run.output.status.code(), Some(78), "{err}");
        err
    };
    for (args, expected) in [
        (
            (
                "missing-root.json",
                channel_key.as_str(),
                "data",
                "admin.tokens",
            ),
            "cannot read root missing-root.json",
        ),
        (
            (root.as_str(), release_key.as_str(), "data", "admin.tokens"),
            "is not a key of the channel role",
        ),
        (
            (root.as_str(), "enc/channel.key", "data", "admin.tokens"),
            "is passphrase-encrypted: the update server signs channel statements unattended",
        ),
        (
            (
                root.as_str(),
                channel_key.as_str(),
                "data",
                "placeholder.tokens",
            ),
            "looks like a placeholder",
        ),
        (
            (
                root.as_str(),
                channel_key.as_str(),
                "a-file",
                "admin.tokens",
            ),
            "cannot create data dir a-file",
        ),
    ] {
        let err = run(args.0, args.1, args.2, args.3);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("update-server: error:"))
            .collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains(expected),
            "expected {expected:?} in {err}"
        );
    }
}
