//! Canary waves (issue 13): the signed statement names who may update now. A real server, real
//! HTTP and the agent's own decision code (`manifests::UpdateCheck`) on what it serves: workers
//! outside the open wave are told "not yet" by the signed statement, a late arrival waits for its
//! wave, and the plan opens the next wave by itself once the first one's workers reported.
//! The simulated fleet's waves are in `simulator.rs`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::fleet::{Api, PLATFORM};
use e2e::world::World;
use manifests::{ChannelStatement, Decision, Idle, LocalState, Release, Signed, Timestamp};

const V1: &str = "1.0.0";
const V2: &str = "1.1.0";

/// What worker `id` on canary at [`V1`] decides on the statement it is served now.
fn decision(w: &World, worker: &Api, id: &str) -> (Decision, Signed<ChannelStatement>) {
    let reply = worker.latest("canary", V1, id);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let value = reply.json();
    let channel: Signed<ChannelStatement> =
        Signed::from_slice(&serde_json::to_vec(&value["channel"]).expect("json"))
            .expect("statement");
    let release: Signed<Release> =
        Signed::from_slice(&serde_json::to_vec(&value["release"]).expect("json")).expect("release");
    let local = LocalState {
        product: manifests::PRODUCT.to_owned(),
        platform: PLATFORM.to_owned(),
        worker_id: id.to_owned(),
        channel: "canary".to_owned(),
        current_version: V1.parse().expect("version"),
        accepted_serial: None,
        accepted_statement_sha256: None,
        quarantined: BTreeSet::new(),
    };
    let decision = manifests::UpdateCheck {
        root: &w.trust.trusted_root(),
        channel: &channel,
        release: &release,
        rollback: None,
        ignore_cohort: false,
    }
    .decide(&local, Timestamp::now());
    (decision, channel)
}

fn report_success(worker: &Api, id: &str) {
    let reply = worker.post_json(
        "/api/worker-updates/report",
        &serde_json::json!({
            "worker_id": id,
            "correlation_id": format!("c-{id}"),
            "from_version": V1,
            "to_version": V2,
            "outcome": "success",
            "duration_ms": 1000,
            "at": Timestamp::now().to_string(),
            "channel": "canary",
        }),
    );
    assert!(
        reply.status == 202 || reply.status == 200,
        "{}",
        reply.text()
    );
}

#[test]
fn a_worker_outside_the_open_wave_is_told_not_yet_and_a_late_arrival_joins_when_its_wave_opens() {
    let w = World::builder().start();
    w.publish_written(
        V2,
        "artifacts/worker-agent-1.1.0",
        "#!/bin/sh\necho 1.1.0\n".repeat(5000),
    );
    let worker = w.server.worker();
    let ids: Vec<String> = (0..10).map(|i| format!("worker-{i:02}")).collect();
    // Ten workers the server has seen on canary (a poll before the release exists).
    for id in &ids {
        assert_eq!(worker.latest("canary", V1, id).status, 200);
    }
    let reply = w.server.admin().post_json(
        "/api/admin/channels/canary/plan",
        &serde_json::json!({"version": V2, "waves": "3,100%", "max_in_flight": "100%"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let summary = reply.json();
    assert_eq!(summary["percent"], 0, "{summary:#}");
    assert_eq!(summary["wave"]["number"], 1, "{summary:#}");
    assert_eq!(summary["wave"]["of"], 2, "{summary:#}");
    assert_eq!(summary["wave"]["named"], 3, "{summary:#}");

    // Exactly the three named by the signed statement install; the others are told not yet.
    let mut named = Vec::new();
    for id in &ids {
        let (decision, statement) = decision(&w, &worker, id);
        let wave = statement
            .signed
            .rollout
            .wave
            .as_ref()
            .expect("a signed wave");
        match decision {
            Decision::Install { plan, .. } => {
                assert_eq!(plan.version.to_string(), V2);
                assert!(
                    wave.workers.contains(id),
                    "{id} installs without being named"
                );
                named.push(id.clone());
            }
            Decision::NothingToDo {
                why:
                    Idle::NotInWave {
                        wave: 1,
                        of: 2,
                        percent: 0,
                    },
                ..
            } => assert!(!wave.workers.contains(id)),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(named.len(), 3, "{named:?}");
    // A worker the server never saw before (offline during the first wave) waits too.
    let (late, _) = decision(&w, &worker, "late-arrival");
    assert!(
        matches!(
            late,
            Decision::NothingToDo {
                why: Idle::NotInWave { wave: 1, .. },
                ..
            }
        ),
        "{late:?}"
    );
    // Nothing opens while the first wave has not reported.
    std::thread::sleep(Duration::from_secs(3));
    let (still, _) = decision(&w, &worker, "late-arrival");
    assert!(matches!(still, Decision::NothingToDo { .. }), "{still:?}");

    // The first wave passes probation: the server opens wave 2 by itself.
    for id in &named {
        report_success(&worker, id);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (decision, statement) = decision(&w, &worker, "late-arrival");
        if let Decision::Install { plan, .. } = decision {
            assert_eq!(plan.version.to_string(), V2);
            assert_eq!(statement.signed.rollout.percent, 100);
            assert_eq!(
                statement
                    .signed
                    .rollout
                    .wave
                    .as_ref()
                    .map(|w| (w.number, w.of)),
                Some((2, 2))
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "wave 2 never opened: {decision:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for id in &ids {
        assert!(
            matches!(decision(&w, &worker, id).0, Decision::Install { .. }),
            "{id}"
        );
    }
    // The audit trail says what the server did, and the metrics where the plan stands.
    let audit = w
        .server
        .admin()
        .get("/api/admin/audit?channel=canary&limit=100")
        .json();
    let details: Vec<String> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["kind"] == "wave" || e["kind"] == "plan")
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("wave ") && d.contains("wave 2 of 2 opened")),
        "{details:#?}"
    );
    assert!(
        details.iter().any(|d| d.starts_with("plan ")),
        "{details:#?}"
    );
    let metrics = w.server.admin().get("/metrics").text();
    assert!(
        metrics.contains("update_server_rollout_wave{channel=\"canary\"} 2"),
        "{metrics}"
    );
}

#[test]
fn a_bad_plan_is_refused_with_the_part_that_is_wrong_and_changes_nothing() {
    let w = World::builder().start();
    w.publish_written(
        V2,
        "artifacts/worker-agent-1.1.0",
        "#!/bin/sh\necho 1.1.0\n".repeat(5000),
    );
    let before = w.server.worker().latest("canary", V1, "w").json()["channel"].clone();
    for (body, says) in [
        (
            serde_json::json!({"version": V2, "waves": "10%,5"}),
            "come before",
        ),
        (
            serde_json::json!({"version": V2, "waves": "50%,10%"}),
            "grow",
        ),
        (
            serde_json::json!({"version": V2, "waves": "5@soon"}),
            "soon",
        ),
        (
            serde_json::json!({"version": V2, "waves": "5", "max_in_flight": "0"}),
            "--max-in-flight",
        ),
        (
            serde_json::json!({"version": V2, "waves": "5", "window": "2-5"}),
            "--window",
        ),
    ] {
        let reply = w
            .server
            .admin()
            .post_json("/api/admin/channels/canary/plan", &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let answer = reply.json();
        assert_eq!(answer["reason"], "invalid_plan", "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(says)),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        w.server.worker().latest("canary", V1, "w").json()["channel"],
        before
    );
}

/// The console's channels table shows the wave of a channel that rolls out in waves, with the
/// plan in its tooltip; a channel without a plan shows "—".
#[test]
fn the_console_shows_the_wave_a_channel_is_on() {
    use crate::console::{browser, console, log_in, screenshot_into, wait_for_text};
    let w = World::builder().start();
    w.publish_written(
        V2,
        "artifacts/worker-agent-1.1.0",
        "#!/bin/sh\necho 1.1.0\n".repeat(5000),
    );
    let worker = w.server.worker();
    for i in 0..8 {
        assert_eq!(
            worker.latest("canary", V1, &format!("worker-{i}")).status,
            200
        );
    }
    // A window open now: from an hour ago to two hours from now (UTC).
    let minute = |offset: i64| {
        let m = (Timestamp::now().unix() / 60 + offset).rem_euclid(1440);
        format!("{:02}:{:02}", m / 60, m % 60)
    };
    let window = format!("{}-{}", minute(-60), minute(120));
    let reply = w.server.admin().post_json(
        "/api/admin/channels/canary/plan",
        &serde_json::json!({"version": V2, "waves": "2,50%@1h,100%", "window": window}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let browser = browser();
    let tab = console(&browser, &w.server.url);
    log_in(&tab, &w.server.admin_token);
    let row = wait_for_text(
        &tab,
        "#channels-table tr[data-channel=canary] td.wave",
        "1/3 ",
    );
    assert!(row.contains("rolling"), "{row}");
    let title = tab
        .find_element("#channels-table tr[data-channel=canary] td.wave")
        .and_then(|e| e.get_attribute_value("title"))
        .expect("wave cell")
        .unwrap_or_default();
    assert!(
        title.contains("plan 2,50%@1h,100%")
            && title.contains("2 in flight")
            && title.contains(&format!("{window} UTC")),
        "{title}"
    );
    let stable = wait_for_text(&tab, "#channels-table tr[data-channel=stable]", "stable");
    assert!(stable.contains('—'), "{stable}");
    screenshot_into(&tab, "waves", "channels-with-a-wave");
}
