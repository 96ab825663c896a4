//! The ESUP runner layer under hostile input (issue 14): sources that point at internal
//! addresses or redirect there, completion callbacks to foreign hosts, task ids reused across
//! instances sharing `STORAGE_DIR`, disk limits, idle connections and tool processes that try
//! to write the install. Real agents, the `FakeManager` fixture, real ffmpeg.

use std::time::Duration;

use e2e::fleet::{metric, Agent};
use e2e::manager::{free_port_range, make_clip, runner_api, task_body, FakeManager, RUNNER_TOKEN};
use e2e::world::World;
use serde_json::{json, Value};

/// An agent whose single runner instance listens on `port`, installed under `sandbox/<dir>`,
/// registered with the Manager; `env` over the runner environment.
fn runner_in(world: &World, dir: &str, port: u16, env: &[(&str, &str)]) -> Agent {
    let agent = world
        .runner("1.0.0", port)
        .dir(&world.sandbox.join(dir))
        .env(env)
        .start();
    crate::esup_media::wait_registered(world, port);
    agent
}

/// Starts a task and expects 200.
#[track_caller]
fn start(port: u16, id: &str, task_type: &str, source: &str, parameters: Value, callback: &str) {
    let reply = runner_api(port).post_json(
        "/task/run",
        &task_body(id, task_type, source, parameters, callback),
    );
    assert_eq!(reply.status, 200, "{id}: {}", reply.text());
}

/// Waits until `/task/status/{id}` is final and returns it.
#[track_caller]
fn finished(port: u16, id: &str, limit: Duration) -> Value {
    let api = runner_api(port);
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = api.get(&format!("/task/status/{id}")).json();
        if !matches!(status["status"].as_str(), Some("running") | None) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} still running after {limit:?}: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a task that must fail; returns its error message.
#[track_caller]
fn fails(port: u16, id: &str, task_type: &str, source: &str, parameters: Value) -> String {
    start(port, id, task_type, source, parameters, "");
    let status = finished(port, id, Duration::from_secs(60));
    assert_eq!(status["status"], "failed", "{id}: {status}");
    status["error_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn sources_on_internal_addresses_and_redirect_hops_to_them_are_refused() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("clip.mp4"), 160, 90, 1, true);
    std::fs::write(world.media.join("logo.png"), b"not fetched").expect("logo");
    let manager = world.manager();
    let port = manager.url.rsplit(':').next().expect("port").to_owned();
    let strict = free_port_range(1);
    // The default: no loopback, link-local or private address.
    let strict_agent = runner_in(
        &world,
        "strict",
        strict,
        &[("SOURCE_ALLOW_PRIVATE_NETWORKS", "0")],
    );
    let cases = [
        (
            "src-loopback",
            format!("http://127.0.0.1:{port}/media/clip.mp4"),
            "loopback",
        ),
        // A name is resolved at connect time and its addresses checked then (no rebinding).
        (
            "src-name",
            format!("http://localhost:{port}/media/clip.mp4"),
            "loopback",
        ),
        (
            "src-mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/media/clip.mp4"),
            "loopback",
        ),
        (
            "src-decimal",
            format!("http://2130706433:{port}/media/clip.mp4"),
            "loopback",
        ),
        (
            "src-metadata",
            "http://169.254.169.254/latest/meta-data/x.mp4".to_owned(),
            "link_local",
        ),
        (
            "src-private",
            "http://10.0.0.1/x.mp4".to_owned(),
            "private_network",
        ),
    ];
    for (id, url, reason) in &cases {
        let message = fails(strict, id, "encoding", url, json!({}));
        assert!(
            message.contains(&format!("reason: {reason}"))
                && message.contains("SOURCE_ALLOW_PRIVATE_NETWORKS"),
            "{id}: {message}"
        );
    }
    assert_eq!(manager.media_requests(), 0, "nothing was fetched");
    let refusals = |agent: &Agent, reason: &str| {
        metric(
            &agent.metrics(),
            &format!("worker_task_refusals_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refusals(&strict_agent, "loopback"), Some(4.0));
    assert_eq!(refusals(&strict_agent, "link_local"), Some(1.0));
    assert_eq!(refusals(&strict_agent, "private_network"), Some(1.0));

    // Private networks allowed, hosts listed: every redirect hop is checked against the list.
    let listed = free_port_range(1);
    let listed_agent = runner_in(
        &world,
        "listed",
        listed,
        &[
            ("SOURCE_ALLOW_PRIVATE_NETWORKS", "1"),
            ("SOURCE_ALLOWED_HOSTS", "127.0.0.1"),
        ],
    );
    let hop = manager.moved_url(
        "clip.mp4",
        &format!("http://localhost:{port}/media/clip.mp4"),
    );
    let message = fails(listed, "hop-unlisted", "encoding", &hop, json!({}));
    assert!(
        message.contains("redirect refused") && message.contains("reason: host_not_allowed"),
        "{message}"
    );
    assert_eq!(manager.redirects(), 1);
    assert_eq!(manager.media_requests(), 0, "the hop was not followed");

    // Studio tracks named by the mediapackage and dressing URLs obey the same rules.
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<mediapackage xmlns="http://mediapackage.opencastproject.org" id="mp" presenter="mid">
  <media>
    <track type="presenter/source" id="t1"><mimetype>video/mp4</mimetype><url>http://localhost:{port}/media/clip.mp4</url></track>
    <track type="presentation/source" id="t2"><mimetype>video/mp4</mimetype><url>http://localhost:{port}/media/clip.mp4</url></track>
  </media>
</mediapackage>"#
    );
    std::fs::write(world.media.join("mp.xml"), xml).expect("mediapackage");
    let before = manager.media_requests();
    let message = fails(
        listed,
        "studio-unlisted",
        "studio",
        &manager.media_url("mp.xml"),
        json!({}),
    );
    assert!(message.contains("host_not_allowed"), "{message}");
    assert_eq!(
        manager.media_requests(),
        before + 1,
        "only the mediapackage"
    );
    let dressing = json!({"watermark": format!("http://localhost:{port}/media/logo.png")});
    let message = fails(
        listed,
        "dressing-unlisted",
        "encoding",
        &manager.media_url("clip.mp4"),
        json!({"dressing": dressing.to_string()}),
    );
    assert!(message.contains("host_not_allowed"), "{message}");
    assert_eq!(refusals(&listed_agent, "host_not_allowed"), Some(3.0));

    // A redirect within the rules is followed.
    let good = manager.moved_url(
        "clip.mp4",
        &format!("http://127.0.0.1:{port}/media/clip.mp4"),
    );
    start(listed, "hop-listed", "encoding", &good, json!({}), "");
    let status = finished(listed, "hop-listed", Duration::from_secs(240));
    assert_eq!(status["status"], "completed", "{status}");
}

#[test]
fn completion_callbacks_go_only_to_the_manager_origin_and_never_follow_a_redirect() {
    let world = World::builder().with_manager().start();
    let manager = world.manager();
    // A real second listener on loopback, recording every call it gets.
    let foreign = FakeManager::start(RUNNER_TOKEN, &world.media);
    let port = free_port_range(1);
    let agent = runner_in(&world, "agent", port, &[]);

    let reply = runner_api(port).post_json(
        "/task/run",
        &task_body(
            "cb-foreign",
            "encoding",
            &manager.media_url("missing.mp4"),
            json!({}),
            &foreign.completion_url(),
        ),
    );
    assert_eq!(reply.status, 422, "{}", reply.text());
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("reason: callback_origin") && detail.contains(&manager.url),
        "{detail}"
    );
    assert!(!world.storage.join("cb-foreign").exists(), "nothing ran");
    assert_eq!(
        metric(
            &agent.metrics(),
            "worker_task_refusals_total{reason=\"callback_origin\"}"
        ),
        Some(1.0)
    );

    // The Manager's own origin, answering with a redirect to the foreign host: not followed,
    // retried (COMPLETION_RETRIES, 5) and given up, and the token never reaches that host.
    let moved = manager.moved_url("completion", &foreign.completion_url());
    start(
        port,
        "cb-moved",
        "encoding",
        &manager.media_url("missing.mp4"),
        json!({}),
        &moved,
    );
    assert_eq!(
        finished(port, "cb-moved", Duration::from_secs(60))["status"],
        "failed"
    );
    manager.wait_until(
        "the first attempt and its five retries",
        Duration::from_secs(60),
        |m| m.redirects() >= 6,
    );
    agent.wait_until(
        "the agent gave the callback up",
        Duration::from_secs(30),
        |a| a.log().contains("completion callback failed; giving up"),
    );
    assert!(agent.log().contains("HTTP 307"), "{}", agent.log());
    assert_eq!(
        foreign.completion_calls(),
        0,
        "the redirect was not followed"
    );
    assert!(manager.completions().is_empty());
}

#[test]
fn a_running_task_id_is_locked_across_agents_sharing_storage_dir() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("long.mp4"), 1280, 720, 60, true);
    let manager = world.manager();
    // Two agent processes, one STORAGE_DIR (the world's).
    let first = free_port_range(1);
    let _a = runner_in(&world, "a", first, &[]);
    let second = free_port_range(1);
    let b = runner_in(&world, "b", second, &[]);
    let source = manager.media_url("long.mp4");
    start(first, "shared-id", "encoding", &source, json!({}), "");
    let workspace = world.storage.join("shared-id");
    let log = workspace.join("info_script.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("$ ")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started a tool"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let inputs = || {
        let mut names: Vec<String> = std::fs::read_dir(&workspace)
            .expect("workspace")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = inputs();
    assert!(before.contains(&"long.mp4".to_owned()), "{before:?}");

    let api = runner_api(second);
    let run = api.post_json(
        "/task/run",
        &task_body("shared-id", "encoding", &source, json!({}), ""),
    );
    assert_eq!(run.status, 409, "{}", run.text());
    assert!(
        run.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("reason: task_locked")),
        "{}",
        run.text()
    );
    let delete = api.send(reqwest::Method::DELETE, "/task/delete/shared-id", |r| r);
    assert_eq!(delete.status, 409, "{}", delete.text());
    assert!(delete.text().contains("task_locked"), "{}", delete.text());
    // The running task may add files of its own meanwhile (overview frames under load); the
    // refused run and delete must not have removed any.
    let after = inputs();
    assert!(
        before.iter().all(|name| after.contains(name)),
        "the running workspace is intact: before {before:?}, after {after:?}"
    );
    assert_eq!(
        metric(
            &b.metrics(),
            "worker_task_refusals_total{reason=\"task_locked\"}"
        ),
        Some(2.0)
    );
    assert!(workspace.join("long.mp4").is_file());
    assert_eq!(
        runner_api(first).get("/task/status/shared-id").json()["status"],
        "running"
    );

    // Once it ends, the id is free again everywhere.
    let stop = runner_api(first).post_json("/task/stop/shared-id", &json!({}));
    assert_eq!(stop.status, 202, "{}", stop.text());
    assert_eq!(
        finished(first, "shared-id", Duration::from_secs(60))["status"],
        "failed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delete = api.send(reqwest::Method::DELETE, "/task/delete/shared-id", |r| r);
        if delete.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never released: {} {}",
            delete.status,
            delete.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!workspace.exists());
}

#[test]
fn disk_limits_refuse_a_task_before_it_starts_and_stop_one_that_writes_too_much() {
    let world = World::builder().with_manager().start();
    // About 2.3 MB; its encoded renditions bring the workspace well past 4 MB.
    make_clip(&world.media.join("clip.mp4"), 640, 360, 10, true);
    let manager = world.manager();
    let full = free_port_range(1);
    let full_agent = runner_in(&world, "full", full, &[("MIN_FREE_DISK_GB", "1000000")]);
    let reply = runner_api(full).post_json(
        "/task/run",
        &task_body(
            "no-room",
            "encoding",
            &manager.media_url("clip.mp4"),
            json!({}),
            &manager.completion_url(),
        ),
    );
    assert_eq!(reply.status, 507, "{}", reply.text());
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detail.contains("MIN_FREE_DISK_GB") && detail.contains("reason: disk_full"),
        "{detail}"
    );
    assert!(
        !world.storage.join("no-room").exists(),
        "nothing was written"
    );
    assert_eq!(
        metric(
            &full_agent.metrics(),
            "worker_task_refusals_total{reason=\"disk_full\"}"
        ),
        Some(1.0)
    );

    let bounded = free_port_range(1);
    let bounded_agent = runner_in(&world, "bounded", bounded, &[("MAX_TASK_DISK_GB", "0.004")]);
    start(
        bounded,
        "too-big",
        "encoding",
        &manager.media_url("clip.mp4"),
        json!({}),
        &manager.completion_url(),
    );
    let completion = manager.completion_of("too-big", Duration::from_secs(240));
    assert_eq!(completion["status"], "failed", "{completion}");
    let message = completion["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("MAX_TASK_DISK_GB") && message.contains("reason: task_disk_limit"),
        "{message}"
    );
    let workspace = world.storage.join("too-big");
    assert!(!workspace.join("output").exists(), "no half-written output");
    assert!(
        !workspace.join("clip.mp4").exists(),
        "the source is removed"
    );
    assert!(!workspace.join("manifest.json").exists());
    assert_eq!(runner_api(bounded).get("/task/result/too-big").status, 404);
    assert_eq!(
        metric(
            &bounded_agent.metrics(),
            "worker_task_refusals_total{reason=\"task_disk_limit\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        runner_api(bounded).get("/task/status/too-big").json()["status"],
        "failed"
    );
}

#[test]
fn idle_connections_without_a_token_leave_healthz_and_the_runner_port_answering() {
    let world = World::builder().with_manager().start();
    let port = free_port_range(1);
    let agent = runner_in(
        &world,
        "agent",
        port,
        &[("RUNNER_HEADER_READ_TIMEOUT_SECS", "2")],
    );
    // The worker gets the descriptor limit a service has without LimitNOFILE (1024), so that
    // unbounded idle connections would exhaust it.
    let pid = agent.ready().expect("ready.json")["pid"]
        .as_u64()
        .expect("worker pid");
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=1024:1024"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit");
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
            idle.push(stream);
        }
    }
    let opened = idle.len();
    assert!(opened >= 1_000, "only {opened} connections opened");
    let health_started = std::time::Instant::now();
    let health = agent.health();
    let health_took = health_started.elapsed();
    assert!(
        health.is_some_and(|h| h["status"] == "ok"),
        "/healthz does not answer beside {opened} idle runner connections"
    );
    let ping_started = std::time::Instant::now();
    let ping = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/runner/ping"))
        .timeout(Duration::from_secs(90))
        .send()
        .expect("the runner port answers once idle connections are cut");
    assert_eq!(ping.status(), 200);
    let ping_took = ping_started.elapsed();
    eprintln!(
        "{opened} idle connections opened in {:?}; /healthz answered in {health_took:?}, /runner/ping in {ping_took:?}",
        health_started - started
    );
    drop(idle);
    assert_eq!(runner_api(port).get("/runner/ping").status, 200);
}

#[test]
fn tool_processes_cannot_write_the_install_or_the_state_directory() {
    let world = World::builder().with_manager().start();
    make_clip(&world.media.join("clip.mp4"), 160, 90, 1, true);
    let manager = world.manager();
    let dir = world.sandbox.join("confined");
    let (install, state) = (dir.join("install"), dir.join("state"));
    // A stand-in for a compromised ffprobe: it tries to write the install and state
    // directories, reports each attempt on stderr (error_script.log), then runs the real one.
    let script = format!(
        r#"#!/bin/bash
for target in "{install}/planted" "{state}/planted" "{state}/ready.json"; do
  if ( : >> "$target" ) 2>/dev/null; then echo "sandbox-check: WROTE $target" >&2
  else echo "sandbox-check: DENIED $target" >&2; fi
done
if mkdir "{install}/planted-dir" 2>/dev/null; then echo "sandbox-check: WROTE {install}/planted-dir" >&2
else echo "sandbox-check: DENIED {install}/planted-dir" >&2; fi
if echo ok > "$TMPDIR/probe"; then echo "sandbox-check: WORKSPACE-OK" >&2; fi
if [ -z "$RUNNER_TOKEN" ]; then echo "sandbox-check: NO-TOKEN" >&2; fi
# ffmpeg's demuxers can follow URLs named inside a media file: no TCP for tools.
if ( exec 3<>/dev/tcp/127.0.0.1/{manager_port} ) 2>/dev/null; then echo "sandbox-check: TCP-CONNECTED" >&2
else echo "sandbox-check: TCP-DENIED" >&2; fi
exec ffprobe "$@"
"#,
        install = install.display(),
        state = state.display(),
        manager_port = manager.url.rsplit(':').next().expect("port"),
    );
    let tool = world.sandbox.write("tools/ffprobe", script);
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let port = free_port_range(1);
    let agent = runner_in(
        &world,
        "confined",
        port,
        &[("FFPROBE_PATH", &tool.to_string_lossy())],
    );
    start(
        port,
        "confined-task",
        "encoding",
        &manager.media_url("clip.mp4"),
        json!({}),
        &manager.completion_url(),
    );
    let completion = manager.completion_of("confined-task", Duration::from_secs(240));
    let errors = std::fs::read_to_string(world.storage.join("confined-task/error_script.log"))
        .unwrap_or_default();
    assert_eq!(completion["status"], "completed", "{completion}\n{errors}");
    let log = agent.log();
    assert!(
        errors.contains("sandbox-check: NO-TOKEN"),
        "the tool inherited RUNNER_TOKEN:\n{errors}"
    );
    let enforced = log.contains("tool sandbox: Landlock enforced");
    if enforced || log.contains("tool sandbox: Landlock partially enforced") {
        for target in [
            format!("{}/planted", install.display()),
            format!("{}/planted", state.display()),
            format!("{}/ready.json", state.display()),
            format!("{}/planted-dir", install.display()),
        ] {
            assert!(
                errors.contains(&format!("sandbox-check: DENIED {target}")),
                "{target}:\n{errors}"
            );
        }
        assert!(!errors.contains("sandbox-check: WROTE"), "{errors}");
        assert!(errors.contains("sandbox-check: WORKSPACE-OK"), "{errors}");
        assert!(!install.join("planted").exists() && !state.join("planted").exists());
        assert!(!install.join("planted-dir").exists());
        if enforced {
            // Every right asked for is enforced, TCP (Landlock ABI 4) included.
            assert!(errors.contains("sandbox-check: TCP-DENIED"), "{errors}");
        }
        eprintln!(
            "Landlock enforced (fully: {enforced}): the tool's 4 writes outside its workspace were denied"
        );
    } else {
        // A kernel without Landlock: the fallback is logged, by the worker and for the tool.
        assert!(
            log.contains("WITHOUT write confinement (fallback)"),
            "neither enforced nor the logged fallback:\n{log}"
        );
        assert!(errors.contains("WITHOUT write confinement"), "{errors}");
        eprintln!("this kernel lacks Landlock: only the logged fallback was checked");
    }
}
