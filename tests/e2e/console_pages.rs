//! The console's pages beyond the channel list, in a real browser (the helpers of
//! [`crate::console`]) against a real `update-server`: a channel's rollout progress over time
//! (`GET /api/admin/channels/{channel}/history`), the fleet paged through every worker
//! (`GET /api/admin/workers`), the audit log's filters (channel, action, actor, time), and the
//! auto-halt of a release real agents roll back, seen in the console.

use std::time::Duration;

use e2e::fleet::{Api, PLATFORM};
use e2e::world::World;
use manifests::Timestamp;

use crate::console::{
    browser, click, console, log_in, screenshot, text_of, type_into, visible_text, wait_for_text,
};

/// Workers registered for the paging test: more than the server's default page (100) and more
/// than the console's (50).
const WORKERS: usize = 120;

fn register(worker: &Api, id: &str, version: &str) {
    let reply = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": id, "current_version": version, "platform": PLATFORM,
            "channel": "canary", "hostname": format!("host-{id}")}),
    );
    assert_eq!(reply.status, 200, "register {id}: {}", reply.text());
}

fn report(worker: &Api, id: &str, outcome: &str, reason: &str) {
    let reply = worker.post_json(
        "/api/worker-updates/report",
        &serde_json::json!({"worker_id": id, "correlation_id": format!("corr-{id}"),
            "from_version": "1.3.0", "to_version": "1.4.0", "outcome": outcome, "reason": reason,
            "duration_ms": 1200, "at": Timestamp::now().to_string(), "channel": "canary"}),
    );
    assert_eq!(reply.status, 202, "report {id}: {}", reply.text());
}

fn worker_id(i: usize) -> String {
    format!("w{i:03}")
}

/// The worker ids of the workers table on the page shown.
fn ids_on_page(tab: &headless_chrome::Tab) -> Vec<String> {
    text_of(
        tab,
        "[...document.querySelectorAll('#workers-table tbody tr')].map(r => r.dataset.worker).join(',')",
    )
    .split(',')
    .filter(|s| !s.is_empty())
    .map(str::to_owned)
    .collect()
}

/// 120 workers on canary at 1.3.0; 1.4.0 promoted at 25 %, 10 of them report its success (and
/// come back at 1.4.0), one rolls it back. The history endpoint replays that: 120 at 1.3.0
/// first, 110 + 10 now, with both promotions and their rollout %; the console draws it as SVG.
/// The inventory pages through all 120 workers, over HTTP (default page 100) and in the
/// console (page 50, next/previous), and a worker's drill-down shows its rollback's reason and
/// correlation id.
#[test]
fn the_progress_page_shows_versions_over_time_and_the_fleet_pages_through_every_worker() {
    let w = World::builder()
        .server_args(&["--worker-rate-burst", "1000"])
        .start();
    for version in ["1.3.0", "1.4.0"] {
        w.publish_written(
            version,
            &format!("artifacts/worker-agent-{version}"),
            format!("#!/bin/sh\necho {version}\n"),
        );
    }
    w.server.promote("canary", "1.3.0", 100);
    let worker = w.server.worker();
    for i in 0..WORKERS {
        register(&worker, &worker_id(i), "1.3.0");
    }
    // The rollout starts a second later, so its points are apart from the first one.
    std::thread::sleep(Duration::from_millis(1100));
    // The whole 25 % at once (no first wave): the page is about what the reports say.
    let promoted = w.server.admin().post_json(
        "/api/admin/channels/canary/promote",
        &serde_json::json!({"version": "1.4.0", "percent": 25, "first_wave": 0}),
    );
    assert_eq!(promoted.status, 200, "{}", promoted.text());
    for i in 0..10 {
        report(&worker, &worker_id(i), "success", "");
        register(&worker, &worker_id(i), "1.4.0");
    }
    report(&worker, &worker_id(10), "rolled_back", "died_in_probation");

    let admin = w.server.admin();
    let history = admin.get("/api/admin/channels/canary/history");
    assert_eq!(history.status, 200, "{}", history.text());
    let history = history.json();
    assert_eq!(history["versions"], serde_json::json!(["1.3.0", "1.4.0"]));
    assert_eq!(history["reports"], 11, "{history:#}");
    assert_eq!(history["truncated"], false);
    let points = history["points"].as_array().expect("points");
    assert_eq!(
        points.first().expect("a first point")["workers"],
        serde_json::json!({"1.3.0": WORKERS}),
        "{history:#}"
    );
    assert_eq!(
        points.last().expect("a last point")["workers"],
        serde_json::json!({"1.3.0": WORKERS - 10, "1.4.0": 10}),
        "{history:#}"
    );
    let promotions: Vec<(String, u64)> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "promote")
        .map(|e| {
            (
                e["version"].as_str().expect("version").to_owned(),
                e["percent"].as_u64().expect("percent"),
            )
        })
        .collect();
    assert_eq!(
        promotions,
        vec![("1.3.0".to_owned(), 100), ("1.4.0".to_owned(), 25)]
    );
    let unknown = admin.get("/api/admin/channels/edge/history");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(unknown.json()["reason"], "unknown_channel");

    // The inventory, page by page: the default page is 100, `next_offset` names the next one.
    let first = admin.get("/api/admin/workers").json();
    assert_eq!(
        (&first["total"], &first["limit"], &first["next_offset"]),
        (
            &serde_json::json!(WORKERS),
            &serde_json::json!(100),
            &serde_json::json!(100)
        )
    );
    assert_eq!(first["workers"].as_array().expect("workers").len(), 100);
    assert_eq!(first["workers"][0]["worker_id"], "w000");
    let last = admin.get("/api/admin/workers?offset=100").json();
    assert_eq!(last["workers"].as_array().expect("workers").len(), 20);
    assert_eq!(last["workers"][19]["worker_id"], "w119");
    assert_eq!(last["next_offset"], serde_json::Value::Null);
    let upgraded = admin
        .get("/api/admin/workers?version=1.4.0&limit=5000")
        .json();
    assert_eq!(
        (&upgraded["total"], &upgraded["limit"]),
        (&serde_json::json!(10), &serde_json::json!(1000))
    );
    let bad = admin.get("/api/admin/workers?offset=-1");
    assert_eq!(bad.status, 400, "{}", bad.text());

    let browser = browser();
    let tab = console(&browser, &w.server.url);
    log_in(&tab, &w.server.admin_token);
    let row = wait_for_text(&tab, "#channels-table tr[data-channel=canary]", "1.4.0");
    assert!(row.contains("25 %"), "{row}");
    click(
        &tab,
        "#channels-table tr[data-channel=canary] a.progress-link",
    );
    wait_for_text(&tab, "#view h2", "Rollout progress of canary");
    let table = wait_for_text(&tab, "#history-table", "1.4.0");
    assert!(table.contains(&(WORKERS - 10).to_string()), "{table}");
    assert_eq!(
        text_of(
            &tab,
            "document.querySelectorAll('#progress-chart polygon.band').length"
        ),
        "2",
        "one band per version"
    );
    assert_eq!(
        text_of(
            &tab,
            "[...document.querySelectorAll('#progress-chart polygon.band')].map(p => p.dataset.version).join(' ')"
        ),
        "1.3.0 1.4.0"
    );
    assert_eq!(
        text_of(
            &tab,
            "document.querySelectorAll('#progress-chart g.event[data-kind=promote]').length"
        ),
        "2"
    );
    let events = visible_text(&tab, "#history-events");
    assert!(
        events.contains("25 %") && events.contains("ops"),
        "{events}"
    );
    wait_for_text(&tab, "#progress-legend", "1.4.0");
    screenshot(&tab, "progress");

    // The fleet, 50 a page: three pages, every worker once.
    click(&tab, "nav a[href='#/fleet']");
    wait_for_text(&tab, "#fleet-range", &format!("workers 1–50 of {WORKERS}"));
    let mut seen = ids_on_page(&tab);
    assert_eq!(visible_text(&tab, "#fleet-prev"), "", "no previous page");
    click(&tab, "#fleet-next");
    wait_for_text(
        &tab,
        "#fleet-range",
        &format!("workers 51–100 of {WORKERS}"),
    );
    seen.extend(ids_on_page(&tab));
    click(&tab, "#fleet-next");
    wait_for_text(
        &tab,
        "#fleet-range",
        &format!("workers 101–120 of {WORKERS}"),
    );
    seen.extend(ids_on_page(&tab));
    assert_eq!(
        visible_text(&tab, "#fleet-next"),
        "",
        "no next page after the last"
    );
    screenshot(&tab, "fleet-last-page");
    let expected: Vec<String> = (0..WORKERS).map(worker_id).collect();
    assert_eq!(seen, expected, "every worker once, in id order");
    click(&tab, "#fleet-prev");
    wait_for_text(
        &tab,
        "#fleet-range",
        &format!("workers 51–100 of {WORKERS}"),
    );
    click(&tab, "#fleet-prev");
    wait_for_text(&tab, "#fleet-range", &format!("workers 1–50 of {WORKERS}"));
    // The drill-down of the worker that rolled back: reason and correlation id.
    click(&tab, "#workers-table tr[data-worker=w010] a");
    wait_for_text(&tab, "#worker-facts", "1.3.0");
    let reports = wait_for_text(&tab, "#worker-reports", "rolled_back died_in_probation");
    assert!(reports.contains("corr-w010"), "{reports}");
    screenshot(&tab, "worker-drill-down");
}

/// The audit page filters through `GET /api/admin/audit`'s own filters: channel, action
/// (`kind`), actor (a token name or a report's worker id) and a time window (`since`, `until`).
#[test]
fn the_audit_page_filters_by_channel_action_actor_and_time() {
    let w = World::new();
    w.publish_written(
        "1.4.0",
        "artifacts/worker-agent-1.4.0",
        "#!/bin/sh\necho 1.4.0\n",
    );
    w.server.promote("canary", "1.4.0", 10);
    let worker = w.server.worker();
    register(&worker, "w-a", "1.3.0");
    register(&worker, "w-b", "1.3.0");
    report(&worker, "w-a", "failure", "hash_mismatch");
    report(&worker, "w-b", "success", "");
    // The halt is the only entry after this instant.
    std::thread::sleep(Duration::from_millis(1100));
    let cut = Timestamp::now();
    let halt = w.server.admin().post_json(
        "/api/admin/channels/canary/halt",
        &serde_json::json!({"reason": "watching the encoders"}),
    );
    assert_eq!(halt.status, 200, "{}", halt.text());
    let before = Timestamp::from_unix(cut.unix() - 1).expect("time");

    let admin = w.server.admin();
    let entries = |query: &str| -> Vec<(String, String)> {
        let reply = admin.get(&format!("/api/admin/audit?{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.text());
        reply.json()["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or_default().to_owned(),
                    e["actor"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        entries("actor=w-a"),
        vec![("report".to_owned(), "w-a".to_owned())]
    );
    assert_eq!(
        entries(&format!("channel=canary&actor=ops&since={cut}")),
        vec![("halt".to_owned(), "ops".to_owned())]
    );
    let until = entries(&format!("channel=canary&until={before}"));
    assert!(
        !until.is_empty() && until.iter().all(|(kind, _)| kind != "halt"),
        "{until:?}"
    );
    assert_eq!(entries("kind=promote&actor=w-a"), vec![]);
    let bad = admin.get("/api/admin/audit?until=yesterday");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("until"), "{}", bad.text());

    let browser = browser();
    let tab = console(&browser, &w.server.url);
    log_in(&tab, &w.server.admin_token);
    wait_for_text(&tab, "#who", "ops (admin)");
    click(&tab, "nav a[href='#/audit']");
    wait_for_text(&tab, "#audit-table", "watching the encoders");
    type_into(&tab, "#audit-actor", "w-a");
    click(&tab, "#audit-apply");
    wait_for_text(&tab, "#audit-count", "1 entry");
    let rows = visible_text(&tab, "#audit-table tbody");
    assert!(
        rows.contains("failure hash_mismatch") && !rows.contains("w-b"),
        "{rows}"
    );
    assert!(text_of(&tab, "location.hash").contains("actor=w-a"));
    screenshot(&tab, "audit-by-actor");
    // Actor cleared; the time window before the halt: everything but the halt.
    click(&tab, "#audit-clear");
    wait_for_text(&tab, "#audit-table", "watching the encoders");
    type_into(&tab, "#audit-channel", "canary");
    type_into(&tab, "#audit-until", &before.to_string());
    click(&tab, "#audit-apply");
    wait_for_text(&tab, "#audit-table tbody", "w-b");
    let rows = visible_text(&tab, "#audit-table tbody");
    assert!(!rows.contains("watching the encoders"), "{rows}");
    assert!(rows.contains("promote"), "{rows}");
    screenshot(&tab, "audit-until");
    // A malformed time is the server's refusal, shown.
    type_into(&tab, "#audit-since", "last tuesday");
    click(&tab, "#audit-apply");
    wait_for_text(&tab, "#error", "400");
}

/// Real agents: a v1 agent follows stable; in the browser an admin promotes 2.0.0 there
/// (overriding the soak gate, confirmed). 2.0.0 exits at once, the agent rolls it back and
/// reports it, and the server auto-halts the channel (`--auto-halt-failures 1`). The console
/// shows the halt with its reason, the `auto_halt` audit line, the failure by reason, and the
/// progress page the worker staying on 1.0.0 with the promotion and the auto-halt marked.
#[test]
fn an_auto_halt_after_a_failing_release_shows_in_the_browser() {
    let w = World::builder()
        .server_args(&["--auto-halt-failures", "1"])
        .start();
    let agent = w.agent("1.0.0").start();
    agent.wait_until("v1 serving", Duration::from_secs(60), |a| {
        a.serves_version("1.0.0")
    });
    let bad = w.sandbox.write("bad-release", "#!/bin/sh\nexit 1\n");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    w.publish("2.0.0", &[(PLATFORM, &bad)]);

    let browser = browser();
    let tab = console(&browser, &w.server.url);
    log_in(&tab, &w.server.admin_token);
    let stable = wait_for_text(&tab, "#channels-table tr[data-channel=stable]", "stable");
    assert!(stable.contains("nothing promoted"), "{stable}");
    click(&tab, "button[data-action=promote][data-channel=stable]");
    type_into(&tab, "#action-reason", "hotfix for the encoders");
    click(&tab, "#action-override");
    click(&tab, "#action-submit");
    wait_for_text(
        &tab,
        "#action-confirmation",
        "promote 2.0.0 on stable to 100 % (overriding the soak gate)",
    );
    click(&tab, "#action-confirm");
    wait_for_text(&tab, "#notice", "done: promote 2.0.0 on stable");
    screenshot(&tab, "failing-release-promoted");

    w.wait_for_report(
        &agent,
        "rolled_back exited_before_ready 1.0.0->2.0.0",
        Duration::from_secs(120),
    );
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(
        status["channels"][0]["halted"], true,
        "auto-halted: {status}"
    );

    click(&tab, "nav a[href='#/audit']");
    let audit = wait_for_text(&tab, "#audit-table", "auto_halt");
    assert!(audit.contains("auto-halt"), "the actor: {audit}");
    assert!(audit.contains("exited_before_ready"), "the report: {audit}");
    screenshot(&tab, "auto-halt-audit");
    click(&tab, "nav a[href='#/failures']");
    let failures = wait_for_text(&tab, "#failures-table", "exited_before_ready");
    assert!(
        failures.contains("rolled_back") && failures.contains("2.0.0"),
        "{failures}"
    );
    click(&tab, "nav a[href='#/channels']");
    let halted = wait_for_text(&tab, "#channels-table tr[data-channel=stable]", "halted");
    assert!(halted.contains("2.0.0"), "{halted}");
    wait_for_text(
        &tab,
        "button[data-action=resume][data-channel=stable]",
        "Resume",
    );
    screenshot(&tab, "auto-halted");

    click(
        &tab,
        "#channels-table tr[data-channel=stable] a.progress-link",
    );
    let table = wait_for_text(&tab, "#history-table", "1.0.0");
    assert!(
        !table.contains("2.0.0"),
        "no worker ever ran 2.0.0: {table}"
    );
    let events = wait_for_text(&tab, "#history-events", "auto_halt");
    assert!(
        events.contains("promote") && events.contains("100 %"),
        "{events}"
    );
    assert_eq!(
        text_of(
            &tab,
            "document.querySelectorAll('#progress-chart g.event[data-kind=auto_halt]').length"
        ),
        "1"
    );
    screenshot(&tab, "auto-halt-progress");
}
