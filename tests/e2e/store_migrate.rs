//! `update-server migrate --from sqlite:<DATA_DIR> --to postgres://...`: a real server on
//! SQLite gets state, stops, its state is copied into a real PostgreSQL database, and a server
//! on that database serves the same thing and keeps growing the serials.

use e2e::bin;
use e2e::fleet::PLATFORM;
use e2e::world::World;
use manifests::Timestamp;

#[test]
fn migrate_copies_a_sqlite_deployment_into_postgres_and_refuses_a_non_empty_target() {
    let mut w = World::new();
    w.publish_written(
        "1.3.0",
        "artifacts/worker-agent-1.3.0",
        "#!/bin/sh\necho 1.3.0\n".repeat(5000),
    );
    let created = w
        .server
        .admin()
        .post_json("/api/admin/channels", &serde_json::json!({"name": "edge"}));
    assert!(created.status < 300, "{}", created.text());
    w.server.promote("edge", "1.3.0", 50);
    let promoted = w.server.promote("edge", "1.3.0", 100);
    let serial = promoted["serial"].as_u64().expect("serial");
    assert_eq!(serial, 2, "{promoted}");
    let worker = w.server.worker();
    let register = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": "w-1", "current_version": "1.0.0", "platform": PLATFORM,
                            "channel": "edge", "hostname": "encoder-1", "task_types": ["encoding"]}),
    );
    assert_eq!(register.status, 200, "{}", register.text());
    let report = worker.post_json(
        "/api/worker-updates/report",
        &serde_json::json!({"worker_id": "w-1", "correlation_id": "c-mig", "from_version": "1.0.0",
            "to_version": "1.3.0", "outcome": "success", "reason": "", "duration_ms": 1234,
            "at": Timestamp::now().to_string()}),
    );
    assert_eq!(report.status, 202, "{}", report.text());
    let before = worker.latest("edge", "1.0.0", "w-1").json();
    assert_eq!(before["channel"]["signed"]["serial"], serial, "{before}");
    w.server.stop();

    let url = e2e::postgres::database();
    let from = format!("sqlite:{}", w.server.data_dir.display());
    let started = std::time::Instant::now();
    let out = w
        .sandbox
        .run(
            &bin("update-server"),
            &["migrate", "--from", &from, "--to", &url],
        )
        .success();
    eprintln!("migrate took {:?}:\n{out}", started.elapsed());
    for expected in [
        "copied releases: 1",
        "copied statements: 2",
        "copied workers: 1",
        "copied reports: 1",
        "copied roots: 1",
    ] {
        assert!(out.contains(expected), "{expected} missing: {out}");
    }

    w.server.start_again_with(&[("--database-url", &url)]);
    let worker = w.server.worker();
    let after = worker.latest("edge", "1.0.0", "w-1").json();
    assert_eq!(
        before["channel"], after["channel"],
        "the same signed statement, at the same serial, after migrating"
    );
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(status["workers_total"], 1, "{status}");
    assert!(status.to_string().contains("w-1"), "{status}");
    let audit = w.server.admin().get("/api/admin/audit").text();
    for expected in [
        "\"publish\"",
        "\"promote\"",
        "\"channel_create\"",
        "correlation c-mig",
    ] {
        assert!(
            audit.contains(expected),
            "{expected} missing after migrating: {audit}"
        );
    }
    let next = w.server.promote("edge", "1.3.0", 100);
    assert_eq!(next["serial"], serial + 1, "{next}");
    w.server.stop();

    // The target now holds data: a second migrate is refused and writes nothing.
    let refused = w.sandbox.run(
        &bin("update-server"),
        &["migrate", "--from", &from, "--to", &url],
    );
    let error = refused.failure();
    assert!(error.contains("already holds data"), "{error}");
    assert_eq!(
        e2e::postgres::cluster()
            .psql(
                url.rsplit('/').next().expect("db name"),
                "SELECT COUNT(*) FROM statements WHERE channel = 'edge'"
            )
            .trim(),
        "3",
        "nothing written by the refused migrate"
    );
}
