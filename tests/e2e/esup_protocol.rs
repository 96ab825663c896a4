//! The ESUP runner protocol against the real agent: registration, heartbeats and reconnects
//! with the Manager (played by the `FakeManager` test fixture), auth, refusals and traversal
//! attempts on the task API.

use std::time::Duration;

use e2e::fleet::{metric, Agent};
use e2e::manager::{free_port_range, runner_api, task_body, RUNNER_TOKEN};
use e2e::world::World;
use serde_json::json;

/// A 1.0.0 agent whose runners start at `base_port`, with `env` over the runner environment.
fn runner(world: &World, base_port: u16, env: &[(&str, &str)]) -> Agent {
    world.runner("1.0.0", base_port).env(env).start()
}

#[test]
fn grouped_instances_register_heartbeat_and_answer_the_open_routes() {
    let world = World::builder().with_manager().start();
    let base = free_port_range(3);
    let logs = world.sandbox.join("logs");
    let agent = runner(
        &world,
        base,
        &[
            (
                "RUNNER_TASK_TYPES",
                "[2x(encoding,studio),1x(transcription)]",
            ),
            ("LOG_DIRECTORY", &logs.to_string_lossy()),
        ],
    );
    world
        .manager()
        .wait_until("three runners registered", Duration::from_secs(60), |m| {
            m.runners().len() == 3
        });
    let runners = world.manager().runners();
    for (index, types) in [
        (0, json!(["encoding", "studio"])),
        (1, json!(["encoding", "studio"])),
        (2, json!(["transcription"])),
    ] {
        let port = base + index;
        let id = format!("e2e-127.0.0.1-{port}");
        let registered = runners
            .get(&id)
            .unwrap_or_else(|| panic!("{id} registered: {runners:?}"));
        assert_eq!(registered.body["url"], format!("http://127.0.0.1:{port}"));
        assert_eq!(registered.body["task_types"], types);
        assert_eq!(registered.body["availability"], "available");
        assert_eq!(
            registered.version_header, "1.7.1",
            "the protocol version, not the agent's 1.0.0"
        );
        let open = e2e::fleet::Api::new(&format!("http://127.0.0.1:{port}"), None);
        let ping = open.get("/runner/ping");
        assert_eq!(ping.status, 200);
        assert_eq!(
            ping.json(),
            json!({"runner_instance_id": index, "runner_id": id, "available": true, "registered": true, "task_types": types})
        );
        let health = open.get("/runner/health").json();
        assert_eq!(health["status"], "healthy");
        assert_eq!(health["registered"], true);
        assert_eq!(health["runner_instance_id"], index);
        assert!(
            health["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{health}"
        );
        assert_eq!(open.get("/").status, 200);
        assert_eq!(
            open.get("/runner/status").json()["current_task"],
            serde_json::Value::Null
        );
        assert_eq!(
            metric(
                &agent.metrics(),
                &format!("worker_runner_registered{{runner_id=\"{id}\"}}")
            ),
            Some(1.0)
        );
    }
    let log_file = std::fs::read_to_string(logs.join("worker-agent.log"))
        .expect("LOG_DIRECTORY/worker-agent.log");
    assert!(
        log_file.contains("registered with the Manager"),
        "{log_file}"
    );
    world.manager().wait_until(
        "heartbeats from every instance",
        Duration::from_secs(20),
        |m| {
            m.runners()
                .values()
                .all(|r| r.heartbeats >= 2 && r.availability == "available")
        },
    );
}

#[test]
fn task_routes_check_the_token_the_body_and_every_path() {
    let world = World::builder().with_manager().start();
    let base = free_port_range(2);
    let _agent = runner(
        &world,
        base,
        &[("RUNNER_TASK_TYPES", "[1x(encoding),1x(transcription)]")],
    );
    world
        .manager()
        .wait_until("registered", Duration::from_secs(60), |m| {
            m.runners().len() == 2
        });
    let api = runner_api(base);

    let missing = api.with_token(None).get("/task/status/abc");
    assert_eq!(
        (missing.status, missing.json()),
        (401, json!({"detail": "Missing authentication token"}))
    );
    let wrong = api
        .with_token(Some("not-the-token-at-all"))
        .get("/task/status/abc");
    assert_eq!(
        (wrong.status, wrong.json()),
        (401, json!({"detail": "Invalid or expired token"}))
    );
    let header = api
        .with_token(None)
        .send(reqwest::Method::GET, "/task/status/abc", |r| {
            r.header("X-API-Token", RUNNER_TOKEN)
        });
    assert_eq!(header.status, 200, "X-API-Token is accepted");
    // X-API-Token is checked first: a good Bearer does not rescue a bad X-API-Token.
    let both = api.send(reqwest::Method::GET, "/task/status/abc", |r| {
        r.header("X-API-Token", "wrong-token-wrong-token")
    });
    assert_eq!(both.status, 401);
    assert_eq!(
        api.get("/task/status/abc").json(),
        json!({"task_id": "abc", "status": "not_found"})
    );

    let media = world.manager().media_url("clip.mp4");
    let unknown = api.post_json(
        "/task/run",
        &task_body(
            "t1",
            "encoding",
            &media,
            json!({"rendition": "{}", "bogus": 1, "also_bad": "x"}),
            "",
        ),
    );
    assert_eq!(unknown.status, 422);
    assert_eq!(
        unknown.json()["detail"],
        "Invalid parameters for task type: encoding (invalid fields: also_bad, bogus)"
    );
    let not_json = api.post_bytes("/task/run", b"{not json".to_vec());
    assert_eq!(not_json.status, 422, "{}", not_json.text());
    let no_source = api.post_json(
        "/task/run",
        &json!({"task_id": "t2", "task_type": "encoding"}),
    );
    assert_eq!(no_source.status, 422, "{}", no_source.text());
    let wrong_type = api.post_json(
        "/task/run",
        &task_body("t3", "transcription", &media, json!({}), ""),
    );
    assert_eq!(
        wrong_type.status,
        422,
        "instance 0 runs encoding only: {}",
        wrong_type.text()
    );
    let bad_id = api.post_json(
        "/task/run",
        &task_body("../../etc", "encoding", &media, json!({}), ""),
    );
    assert_eq!(bad_id.status, 422, "{}", bad_id.text());

    // Nothing outside STORAGE_DIR/<id>/output is reachable.
    std::fs::create_dir_all(world.sandbox.join("storage/t9/output")).expect("task dir");
    std::fs::write(world.sandbox.join("storage/t9/output/ok.txt"), "fine").expect("output");
    std::fs::write(world.sandbox.join("storage/secret.txt"), "secret").expect("secret");
    std::fs::write(
        world.sandbox.join("storage/t9/manifest.json"),
        r#"{"task_id":"t9","files":["ok.txt"]}"#,
    )
    .expect("manifest");
    assert_eq!(api.get("/task/result/t9/file/ok.txt").text(), "fine");
    let served = api.get("/task/result/t9/file/ok.txt");
    assert_eq!(
        served.header("content-type"),
        Some("application/octet-stream")
    );
    std::os::unix::fs::symlink(
        world.sandbox.join("storage/secret.txt"),
        world.sandbox.join("storage/t9/output/link.txt"),
    )
    .expect("symlink");
    for attack in [
        "/task/result/t9/file/..%2F..%2Fsecret.txt",
        "/task/result/t9/file/%2e%2e/%2e%2e/secret.txt",
        "/task/result/t9/file/link.txt",
        "/task/result/..%2Fsecret.txt",
        "/task/result/t9/file/sub%5C..%5C..%5Csecret.txt",
        "/task/result/t9%2F..%2F/file/ok.txt",
        "/task/status/..%2F..%2Fetc",
        "/task/result/t9/file/",
    ] {
        let reply = api.get(attack);
        assert!(
            (400..500).contains(&reply.status),
            "{attack}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().contains("secret"), "{attack} leaked the file");
    }
    assert_eq!(
        api.get("/task/result/t9").json()["files"],
        json!(["ok.txt"])
    );
    assert_eq!(
        api.get("/task/status/t9").json()["status"],
        "completed",
        "untracked with a manifest"
    );
    let stop = api.post_json("/task/stop/t9", &json!({}));
    assert_eq!(
        (stop.status, stop.json()["status"].clone()),
        (200, json!("already_terminal"))
    );
    assert_eq!(api.post_json("/task/stop/nope", &json!({})).status, 404);
    let deleted = api.send(reqwest::Method::DELETE, "/task/delete/t9", |r| r);
    assert_eq!(deleted.json()["status"], "deleted");
    assert!(!world.sandbox.join("storage/t9").exists());
    assert!(world.sandbox.join("storage/secret.txt").exists());
    assert_eq!(api.get("/task/result/t9").status, 404);
}

#[test]
fn unregistered_runner_refuses_tasks_then_reconnects_when_the_manager_returns() {
    let world = World::builder().with_manager().start();
    world.manager().set_down(true);
    let base = free_port_range(1);
    let agent = runner(&world, base, &[]);
    let api = runner_api(base);
    agent.wait_until("the runner port answers", Duration::from_secs(60), |_| {
        reqwest::blocking::get(format!("http://127.0.0.1:{base}/runner/ping")).is_ok()
    });
    let media = world.manager().media_url("clip.mp4");
    let refused = api.post_json(
        "/task/run",
        &task_body("t1", "encoding", &media, json!({}), ""),
    );
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(api.get("/runner/ping").json()["registered"], false);

    world.manager().set_down(false);
    world.manager().wait_until(
        "registered once the Manager is back",
        Duration::from_secs(30),
        |m| m.runners().len() == 1,
    );
    agent.wait_until("ping says registered", Duration::from_secs(10), |_| {
        api.get("/runner/ping").json()["registered"] == true
    });

    // A Manager restart forgets runners: the next heartbeat gets 404 and the runner registers again.
    let before = world.manager().registrations();
    world.manager().forget_runners();
    world.manager().wait_until(
        "re-registered after a Manager restart",
        Duration::from_secs(30),
        |m| m.registrations() > before && m.runners().len() == 1,
    );
    assert!(
        agent.log().contains("heartbeat failed"),
        "the failed heartbeat is logged"
    );
}

#[test]
fn a_protocol_version_the_manager_refuses_leaves_the_runner_unregistered() {
    let world = World::builder().with_manager().start();
    let base = free_port_range(1);
    let agent = runner(&world, base, &[("RUNNER_PROTOCOL_VERSION", "2.0.0")]);
    agent.wait_until("the refusal is logged", Duration::from_secs(60), |a| {
        a.log().contains("Version mismatch")
    });
    assert!(world.manager().runners().is_empty());
    assert_eq!(
        runner_api(base).get("/runner/ping").json()["registered"],
        false
    );
}

#[test]
fn placeholder_tokens_are_refused_at_start() {
    for token in ["default-runner-token", "please-CHANGE_ME-now-0123456789"] {
        let world = World::builder().with_manager().start();
        let base = free_port_range(1);
        let agent = runner(&world, base, &[("RUNNER_TOKEN", token)]);
        agent.wait_until("the refusal is logged", Duration::from_secs(60), |a| {
            a.log().contains("is a placeholder")
        });
        assert!(
            world.manager().runners().is_empty(),
            "{token}: never registered"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", base)).is_err(),
            "{token}: no runner port opened"
        );
    }
}
