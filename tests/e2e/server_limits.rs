//! `update-server` under hostile clients: slow-loris connections, too many connections,
//! oversized bodies, report floods and made-up label values. A real server process, raw TCP and
//! real HTTP.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::fleet::{Api, Reply, PLATFORM};
use e2e::world::World;
use manifests::Timestamp;

/// `host:port` of a server URL.
fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes `stream` (EOF or reset); how long that took, or `None` when it
/// was still open after `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration, started: Instant) -> Option<Duration> {
    let mut buffer = [0_u8; 4096];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if started.elapsed() >= limit {
                    return None;
                }
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

fn assert_envelope(reply: &Reply, status: u16, reason: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[test]
fn slow_loris_connections_are_cut_and_the_health_check_still_answers() {
    let w = World::builder()
        .server_args(&[
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "3s",
            "--max-connections",
            "8",
        ])
        .start();
    let address = address(&w.server.url);
    // 20 connections (more than the cap) that never finish their request head.
    let started = Instant::now();
    let mut partial: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).expect("connect");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .expect("partial head");
            stream
        })
        .collect();
    // The health check is answered while they hang on: at worst after the cap's worth of them
    // has been cut off (1 s each round).
    let health_started = Instant::now();
    let health = Api::new(&w.server.url, None).get("/healthz");
    let health_took = health_started.elapsed();
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(health_took < Duration::from_secs(8), "{health_took:?}");
    // Every partial connection is closed: 20 over 8 slots at 1 s a round is ~3 s.
    let mut slowest = Duration::ZERO;
    for (index, stream) in partial.iter_mut().enumerate() {
        let took = closed_within(stream, Duration::from_secs(15), started)
            .unwrap_or_else(|| panic!("partial-header connection {index} still open after 15 s"));
        slowest = slowest.max(took);
    }
    // A kept-alive connection is closed once idle for --idle-timeout, not before.
    let mut kept = TcpStream::connect(&address).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut answer = [0_u8; 1024];
    kept.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let read = kept.read(&mut answer).expect("answer");
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    let idle_started = Instant::now();
    let idle = closed_within(&mut kept, Duration::from_secs(10), idle_started)
        .expect("idle keep-alive connection still open after 10 s");
    assert!(
        idle >= Duration::from_millis(2500),
        "closed after {idle:?} of idleness"
    );
    eprintln!(
        "healthz answered in {health_took:?} beside 20 partial heads; all 20 closed within {slowest:?}; idle keep-alive closed after {idle:?}"
    );
    // And the server still serves.
    assert_eq!(Api::new(&w.server.url, None).get("/healthz").status, 200);
}

#[test]
fn oversized_bodies_floods_and_made_up_labels_are_bounded() {
    let w = World::builder()
        .server_args(&[
            "--max-body-bytes",
            "4096",
            "--worker-rate-limit",
            "6",
            "--worker-rate-burst",
            "5",
        ])
        .start();
    // Artifacts are bigger than --max-body-bytes: the upload has its own limit.
    let artifact = w.sandbox.join("worker-agent-1.1.0");
    std::fs::write(&artifact, "#!/bin/sh\necho 1.1.0\n".repeat(2000)).expect("artifact");
    w.publish("1.1.0", &[(PLATFORM, artifact.as_path())]);
    w.server.promote("canary", "1.1.0", 100);

    // 413 in the envelope, on a worker route, an admin route and an open route.
    let big = vec![b' '; 10_000];
    let worker = w.server.worker();
    let admin = w.server.admin();
    assert_envelope(
        &worker.post_bytes("/api/workers/register", big.clone()),
        413,
        "too_large",
    );
    assert_envelope(
        &admin.post_bytes("/api/admin/releases", big.clone()),
        413,
        "too_large",
    );
    assert_envelope(
        &Api::new(&w.server.url, None)
            .send(reqwest::Method::GET, "/healthz", |r| r.body(big.clone())),
        413,
        "too_large",
    );

    // A burst of reports from one credential: the first 5 pass, then 429 with Retry-After.
    let report = |worker_id: &str, reason: &str, to_version: &str, channel: &str| {
        worker.post_json(
            "/api/worker-updates/report",
            &serde_json::json!({"worker_id": worker_id, "correlation_id": "c", "from_version": "1.0.0",
                "to_version": to_version, "outcome": "failure", "reason": reason, "duration_ms": 1,
                "at": Timestamp::now().to_string(), "channel": channel}),
        )
    };
    let statuses: Vec<u16> = (0..12)
        .map(|i| report(&format!("flood-{i}"), "download", "1.1.0", "canary").status)
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        (5..=6).contains(&accepted) && statuses[..5].iter().all(|s| *s == 202),
        "{statuses:?}"
    );
    let limited = report("flood-x", "download", "1.1.0", "canary");
    assert_envelope(&limited, 429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=11).contains(&retry_after), "{retry_after}");
    // The limit is per route: registering and polling still work, and so does the admin API.
    let register = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": "w1", "current_version": "1.0.0", "platform": PLATFORM,
            "channel": "canary", "hostname": "h", "task_types": []}),
    );
    assert_eq!(register.status, 200, "{}", register.text());
    assert_eq!(worker.latest("canary", "1.0.0", "w1").status, 200);
    assert_eq!(admin.get("/api/admin/status").status, 200);
    eprintln!("12 reports at once: {statuses:?}; Retry-After {retry_after} s");

    // Made-up reasons, versions and channels create no series. Wait for the bucket to refill
    // (6 a minute: one per 10 s) rather than raise the limit: it is the same server.
    std::thread::sleep(Duration::from_secs(retry_after));
    let series = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("update_server_update_reports_total")
                    || l.starts_with("update_server_fleet_workers")
            })
            .count()
    };
    let before = series(&Api::new(&w.server.url, None).get("/metrics").text());
    let mut sent = Vec::new();
    for i in 0..3 {
        let (reason, version, channel) = (
            format!("made_up_reason_{i}"),
            format!("9.9.{i}"),
            format!("madeup{i}"),
        );
        loop {
            let reply = report(&format!("liar-{i}"), &reason, &version, &channel);
            if reply.status == 202 {
                break;
            }
            assert_eq!(reply.status, 429, "{}", reply.text());
            std::thread::sleep(Duration::from_secs(2));
        }
        worker.latest(&channel, &format!("6.6.{i}"), &format!("liar-{i}"));
        worker.latest("canary", &format!("7.7.{i}"), &format!("liar-{i}"));
        sent.extend([
            reason,
            version,
            channel,
            format!("6.6.{i}"),
            format!("7.7.{i}"),
        ]);
    }
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    for value in &sent {
        assert!(
            !metrics.contains(&format!("\"{value}\"")),
            "{value} became a label value:\n{metrics}"
        );
    }
    let after = series(&metrics);
    assert!(
        after <= before + 3,
        "{before} series before, {after} after 3 made-up reports and 6 polls:\n{metrics}"
    );
    assert!(
        metrics.contains(
            "update_server_update_reports_total{outcome=\"failure\",reason=\"other\",version=\"other\"} 3"
        ),
        "{metrics}"
    );
    eprintln!("series before {before}, after 15 made-up label values {after}");
}

/// Rows of `table` in the server's database.
fn rows(data_dir: &std::path::Path, table: &str, filter: &str) -> i64 {
    let db = rusqlite::Connection::open(data_dir.join("update-server.sqlite3")).expect("db");
    db.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {filter}"),
        [],
        |row| row.get(0),
    )
    .expect("count")
}

#[test]
fn old_reports_and_long_gone_workers_are_deleted_at_start_and_periodically() {
    let sandbox = e2e::Sandbox::new();
    let trust = e2e::fleet::Trust::new(sandbox.path());
    let server = e2e::fleet::Server::start(sandbox.path(), &trust, &[]);
    let worker = server.worker();
    for id in ["old-a", "old-b", "fresh"] {
        let reply = worker.post_json(
            "/api/workers/register",
            &serde_json::json!({"worker_id": id, "current_version": "1.0.0", "platform": PLATFORM,
                "channel": "canary", "hostname": "h", "task_types": []}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        for attempt in 0..2 {
            let reply = worker.post_json(
                "/api/worker-updates/report",
                &serde_json::json!({"worker_id": id, "correlation_id": format!("{id}-{attempt}"),
                    "from_version": "1.0.0", "to_version": "1.1.0", "outcome": "success", "reason": "",
                    "duration_ms": 1, "at": Timestamp::now().to_string(), "channel": "canary"}),
            );
            assert_eq!(reply.status, 202, "{}", reply.text());
        }
    }
    let data_dir = server.data_dir.clone();
    drop(server);
    // Age the rows of the two old workers: reports received 100 days ago, last seen 10 days ago.
    let db = rusqlite::Connection::open(data_dir.join("update-server.sqlite3")).expect("db");
    db.execute_batch(
        "UPDATE reports SET received_at = received_at - 8640000, at = at - 8640000 WHERE worker_id LIKE 'old-%';
         UPDATE workers SET last_seen = last_seen - 864000 WHERE worker_id LIKE 'old-%';",
    )
    .expect("age rows");
    drop(db);
    assert_eq!(rows(&data_dir, "reports", "1"), 6);
    assert_eq!(rows(&data_dir, "workers", "1"), 3);

    let server = e2e::fleet::Server::start(
        sandbox.path(),
        &trust,
        &[
            "--report-retention",
            "30d",
            "--worker-retention",
            "7d",
            "--prune-interval",
            "1s",
        ],
    );
    // Already gone when the server answers its first request.
    let status = server.admin().get("/api/admin/status").json();
    assert_eq!(status["workers_total"], 1, "{status}");
    assert_eq!(rows(&data_dir, "reports", "1"), 2);
    assert_eq!(
        rows(&data_dir, "workers", "1"),
        rows(&data_dir, "workers", "worker_id = 'fresh'")
    );
    assert_eq!(rows(&data_dir, "workers", "worker_id = 'fresh'"), 1);
    let reports = server.reports();
    assert!(
        !reports.contains("old-") && reports.lines().count() == 2,
        "{reports}"
    );
    assert!(
        server
            .log()
            .contains("retention: deleted old reports and workers not seen"),
        "{}",
        server.log()
    );
    // And periodically: a report that ages while the server runs is gone within a few passes.
    let db = rusqlite::Connection::open(data_dir.join("update-server.sqlite3")).expect("db");
    db.execute(
        "UPDATE reports SET received_at = received_at - 8640000 WHERE correlation_id = 'fresh-0'",
        [],
    )
    .expect("age a row");
    let started = Instant::now();
    while rows(&data_dir, "reports", "correlation_id = 'fresh-0'") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an aged report outlived 10 passes of --prune-interval 1s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "at start: 4 of 6 reports and 2 of 3 workers deleted; a report aged while running went in {:?}",
        started.elapsed()
    );
    assert_eq!(rows(&data_dir, "reports", "1"), 1);
}

#[test]
fn every_refusal_is_a_json_envelope_with_the_right_status() {
    let w = World::new();
    let release = w.publish_written(
        "1.1.0",
        "artifacts/worker-agent-1.1.0",
        "#!/bin/sh\necho 1.1.0\n".repeat(100),
    );
    let artifact = &release.signed.artifacts[0].sha256;
    let worker = w.server.worker();
    let admin = w.server.admin();
    let anonymous = Api::new(&w.server.url, None);
    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        // Bad query strings.
        (
            "latest without platform",
            worker.get("/api/worker-updates/latest?channel=canary"),
            400,
            "bad_request",
        ),
        (
            "latest with a non-numeric wait",
            worker.get(&format!(
                "/api/worker-updates/latest?channel=canary&platform={PLATFORM}&current_version=1.0.0&worker_id=w&wait=soon"
            )),
            400,
            "bad_request",
        ),
        (
            "audit with a non-numeric limit",
            admin.get("/api/admin/audit?limit=abc"),
            400,
            "bad_request",
        ),
        // Wrong methods, on open, worker and admin routes.
        (
            "PUT /healthz",
            anonymous.send(reqwest::Method::PUT, "/healthz", |r| r),
            405,
            "method_not_allowed",
        ),
        (
            "DELETE register",
            worker.send(reqwest::Method::DELETE, "/api/workers/register", |r| r),
            405,
            "method_not_allowed",
        ),
        (
            "GET promote",
            admin.get("/api/admin/channels/canary/promote"),
            405,
            "method_not_allowed",
        ),
        // Bad bodies.
        (
            "register with broken JSON",
            worker.send(reqwest::Method::POST, "/api/workers/register", |r| {
                r.header("content-type", "application/json")
                    .body("{\"worker_id\": \"w1\",")
            }),
            400,
            "bad_request",
        ),
        (
            "report with a wrong type",
            worker.post_json(
                "/api/worker-updates/report",
                &serde_json::json!({"worker_id": 3}),
            ),
            422,
            "bad_request",
        ),
        (
            "promote with an unknown field",
            admin.post_json(
                "/api/admin/channels/canary/promote",
                &serde_json::json!({"version": "1.1.0", "percentage": 5}),
            ),
            422,
            "bad_request",
        ),
        (
            "halt as text/plain",
            admin.send(reqwest::Method::POST, "/api/admin/channels/canary/halt", |r| {
                r.header("content-type", "text/plain").body("stop")
            }),
            415,
            "bad_request",
        ),
        // Unknown routes, and a range past the end of an artifact.
        ("GET /api/nope", anonymous.get("/api/nope"), 404, "not_found"),
        (
            "POST /nope",
            anonymous.post_bytes("/nope", Vec::new()),
            404,
            "not_found",
        ),
        (
            "range past the end",
            worker.send(
                reqwest::Method::GET,
                &format!("/api/worker-updates/artifacts/{artifact}"),
                |r| r.header("range", "bytes=99999999-"),
            ),
            416,
            "range",
        ),
    ];
    let mut wrong = Vec::new();
    for (what, reply, status, reason) in &cases {
        let json = serde_json::from_slice::<serde_json::Value>(&reply.body).ok();
        let ok = reply.status == *status
            && reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json"))
            && json.as_ref().is_some_and(|j| {
                j["reason"] == *reason && j["error"].as_str().is_some_and(|e| !e.is_empty())
            });
        if !ok {
            wrong.push(format!(
                "{what}: {} {:?} {}",
                reply.status,
                reply.header("content-type"),
                reply.text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} refusals are not the envelope with the expected status:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    // A 405 still says which methods the route takes.
    let reply = anonymous.send(reqwest::Method::PUT, "/healthz", |r| r);
    assert!(
        reply.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        reply.headers
    );
}
