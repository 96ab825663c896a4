//! `worker-agent` self-update with real processes: the real update server, agent binaries built
//! from this source at two versions, and deliberately bad "releases" that are just executables.

use std::time::Duration;

use e2e::fleet::{metric, Agent, Api, PLATFORM};
use e2e::postgres::Backend;
use e2e::world::World;
use e2e::{agent_at_version, Sandbox};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// How long a test waits for an agent's report.
const REPORT_WAIT: Duration = Duration::from_secs(60);

/// A v1 agent in the world's sandbox with `flags`.
fn v1_agent(w: &World, flags: &[&str]) -> Agent {
    w.agent(V1).flags(flags).start()
}

#[test]
fn happy_path_v1_to_v2_the_new_process_really_runs_v2() {
    happy_path_v1_to_v2_the_new_process_really_runs_v2_on(Backend::Sqlite);
}

#[test]
fn happy_path_v1_to_v2_the_new_process_really_runs_v2_on_postgres() {
    happy_path_v1_to_v2_the_new_process_really_runs_v2_on(Backend::Postgres);
}

fn happy_path_v1_to_v2_the_new_process_really_runs_v2_on(backend: Backend) {
    let args = backend.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = World::builder().server_args(&args).start();
    let agent = v1_agent(&w, &[]);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let v1_pid = agent.ready().expect("ready")["pid"].as_u64();

    w.roll_out(V2, &agent_at_version(V2), 100);
    agent.wait_until("v2 serving", Duration::from_secs(90), |a| {
        a.serves_version(V2)
    });
    w.wait_for_report(&agent, &format!("success {V1}->{V2}"), REPORT_WAIT);

    assert!(
        agent
            .installed_version()
            .starts_with(&format!("worker-agent {V2} (commit ")),
        "{}",
        agent.installed_version()
    );
    let previous = agent.install_path.with_file_name("worker-agent.previous");
    let output = std::process::Command::new(&previous)
        .arg("--version")
        .output()
        .expect("previous runs");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(&format!("worker-agent {V1} ")));
    assert_ne!(
        agent.ready().expect("ready")["pid"].as_u64(),
        v1_pid,
        "a new process serves"
    );
    let metrics = agent.metrics();
    assert_eq!(
        metric(
            &metrics,
            &format!("worker_version_current{{version=\"{V2}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    agent.wait_until("success counted", Duration::from_secs(10), |a| {
        metric(&a.metrics(), "worker_update_success_total") == Some(1.0)
    });
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "worker_update_attempt_total"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "worker_update_download_bytes_total").unwrap_or(0.0) > 1_000_000.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "worker_update_last_check_timestamp_seconds").unwrap_or(0.0) > 1.7e9);
    assert!(
        metric(&metrics, "worker_update_manifest_expiry_timestamp_seconds").unwrap_or(0.0) > 1.7e9
    );
    // One correlation id follows the attempt through the agent's and the server's logs.
    let reports = w.server.reports();
    let correlation = reports
        .split("correlation ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("correlation id in the report")
        .to_owned();
    assert!(
        agent.log().contains(&correlation),
        "agent log lacks {correlation}"
    );
    assert!(
        w.server.log().contains(&correlation),
        "server log lacks {correlation}"
    );
}

#[test]
fn a_release_promoted_during_probation_waits_for_the_commit_then_installs() {
    const V3: &str = "3.0.0";
    let v3 = agent_at_version(V3);
    let w = World::new();
    // A probation long enough to promote v3 while v2 is still in it.
    let agent = v1_agent(&w, &["--probation-secs", "15"]);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    w.roll_out(V2, &agent_at_version(V2), 100);
    agent.wait_until("v2 in probation", Duration::from_secs(90), |a| {
        a.log().contains("holding it in probation") && a.serves_version(V2)
    });
    w.roll_out(V3, &v3, 100);
    // v2 is judged on its own merits: committed, not rolled back because v3 came.
    w.wait_for_report(&agent, &format!("success {V1}->{V2}"), REPORT_WAIT);
    // Then the committed v2 installs v3.
    agent.wait_until("v3 committed", Duration::from_secs(120), |a| {
        a.serves_version(V3)
            && a.installed_version()
                .starts_with(&format!("worker-agent {V3} "))
    });
    w.wait_for_report(&agent, &format!("success {V2}->{V3}"), REPORT_WAIT);
    let reports = w.server.reports();
    assert!(!reports.contains("rolled_back"), "{reports}");
    let trust: serde_json::Value = serde_json::from_slice(
        &std::fs::read(agent.state_dir.join("trust.json")).expect("trust.json"),
    )
    .expect("json");
    assert_eq!(trust["quarantined"], serde_json::json!([]), "{trust}");
    let log = agent.log();
    assert!(!log.contains("died_in_probation"), "{log}");
    assert!(
        log.contains("in probation: no update checks until the supervisor commits"),
        "{log}"
    );
}

/// Rolls out a bad "release" (an executable that is not a working agent) and checks it is
/// rolled back: v1 serving again in a new process, version quarantined, `rolled_back` report,
/// rollback metric, install path untouched.
fn rolled_back(bad: &[u8], expected_reason: &str, extra: &[&str]) {
    let w = World::new();
    let agent = v1_agent(&w, extra);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let artifact = w.sandbox.write("bad-release", bad);
    std::fs::set_permissions(
        &artifact,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    w.roll_out(V2, &artifact, 100);
    w.wait_for_report(
        &agent,
        &format!("rolled_back {expected_reason} {V1}->{V2}"),
        REPORT_WAIT,
    );
    agent.wait_until("v1 serving again", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    assert!(
        agent
            .installed_version()
            .starts_with(&format!("worker-agent {V1} ")),
        "install path untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(agent.install_path.parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".staged") || n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "staged files left: {leftovers:?}");
    let rollback_metric = format!("worker_update_rollback_total{{reason=\"{expected_reason}\"}}");
    agent.wait_until("rollback counted", Duration::from_secs(30), |a| {
        metric(&a.metrics(), &rollback_metric) == Some(1.0)
    });
    let status = std::process::Command::new(&agent.install_path)
        .args([
            "update",
            "status",
            "--update-server",
            &w.server.url,
            "--token",
            "unused-token-for-status-0000",
        ])
        .arg("--root")
        .arg(&w.trust.root_path)
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .output()
        .expect("update status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["quarantined"], serde_json::json!([V2]), "{status}");
    // Quarantined: the same release is not tried again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        w.server.reports().matches("rolled_back").count(),
        1,
        "{}",
        w.server.reports()
    );
}

#[test]
fn a_release_that_exits_at_once_is_rolled_back() {
    rolled_back(b"#!/bin/sh\nexit 1\n", "exited_before_ready", &[]);
}

#[test]
fn a_release_that_hangs_is_rolled_back() {
    rolled_back(
        b"#!/bin/sh\nexec sleep 3600\n",
        "not_ready",
        &["--ready-timeout-secs", "4"],
    );
}

#[test]
fn a_release_that_dies_after_5_s_in_probation_is_rolled_back() {
    // It even announces readiness like a real agent, then dies inside the probation window.
    let script = b"#!/bin/sh\nstate=''\nwhile [ $# -gt 0 ]; do [ \"$1\" = --state-dir ] && state=\"$2\"; shift; done\nprintf '{\"pid\":%s,\"version\":\"2.0.0\",\"metrics\":\"\"}' $$ > \"$state/ready.json\"\nsleep 5\nexit 3\n";
    rolled_back(script, "died_in_probation", &["--probation-secs", "15"]);
}

#[test]
fn a_release_that_is_not_executable_is_rolled_back() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    rolled_back(&garbage, "not_executable", &[]);
}

#[test]
fn no_auto_update_reports_its_version_but_never_updates() {
    for (flags, env) in [
        (vec!["--no-auto-update"], vec![]),
        (vec![], vec![("AUTO_UPDATE", "0")]),
    ] {
        let w = World::new();
        let agent = w.agent(V1).flags(&flags).env(&env).start();
        agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
            a.serves_version(V1)
        });
        w.roll_out(V2, &agent_at_version(V2), 100);
        // It sees the offer (the check happens, the statement is accepted) but does nothing.
        agent.wait_until("the offer checked", Duration::from_secs(30), |a| {
            metric(
                &a.metrics(),
                "worker_update_manifest_expiry_timestamp_seconds",
            )
            .unwrap_or(0.0)
                > 0.0
        });
        std::thread::sleep(Duration::from_secs(3));
        assert!(agent.serves_version(V1));
        assert_eq!(
            metric(&agent.metrics(), "worker_update_attempt_total"),
            Some(0.0)
        );
        let status = w.server.admin().get("/api/admin/status").json();
        assert_eq!(
            status["fleet"][0]["version"], V1,
            "the server still sees the version: {status}"
        );
        assert!(
            agent.log().contains("automatic updates are off"),
            "{env:?} {flags:?}"
        );
    }
}

#[test]
fn force_update_installs_outside_the_rollout_cohort() {
    let w = World::new();
    w.roll_out(V2, &agent_at_version(V2), 0);
    let plain = v1_agent(&w, &[]);
    plain.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        plain.serves_version(V1),
        "0 % rollout: nobody is in the cohort"
    );
    drop(plain);

    let forced_dir = Sandbox::new();
    let forced = w
        .agent(V1)
        .dir(forced_dir.path())
        .flags(&["--force-update"])
        .start();
    forced.wait_until("v2 committed", Duration::from_secs(90), |a| {
        a.serves_version(V2) && a.installed_version().starts_with("worker-agent 2.0.0 ")
    });
    // The force was for that one update: the version it installed runs unforced.
    let pid = forced.ready().expect("ready")["pid"]
        .as_u64()
        .expect("pid in ready.json");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the worker's cmdline");
    let args: Vec<_> = cmdline
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .collect();
    assert!(
        !args.iter().any(|a| a == "--force-update"),
        "the updated worker still runs forced: {args:?}"
    );
}

/// `/latest` requests the update server has answered, whatever their status.
fn latest_requests(w: &World) -> f64 {
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("update_server_http_requests_total{route=\"/api/worker-updates/latest\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn force_update_with_nothing_to_install_polls_at_the_normal_cadence() {
    let w = World::new();
    let forced = v1_agent(&w, &["--force-update"]);
    forced.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let before = latest_requests(&w);
    std::thread::sleep(Duration::from_secs(5));
    let polls = latest_requests(&w) - before;
    assert!(
        polls <= 5.0,
        "an idle forced agent made {polls} /latest requests in 5 s"
    );
    assert!(forced.serves_version(V1));
}

/// Whether the agent's worker refuses new tasks (`/healthz` `draining`).
fn refuses_tasks(agent: &Agent) -> bool {
    agent.health().is_some_and(|h| h["draining"] == true)
}

#[test]
fn below_a_signed_minimum_it_refuses_tasks_unless_told_to_serve_and_installs_the_fix() {
    let w = World::new();
    w.publish(V2, &[(PLATFORM, &agent_at_version(V2))]);
    // The signed statement says 1.5.0 is the oldest version allowed to serve; the release that
    // fixes v1 agents is offered to nobody (0 %), and the channel is halted for now.
    let reply = w.server.admin().post_json(
        "/api/admin/channels/stable/promote",
        &serde_json::json!({"version": V2, "percent": 0, "minimum_version": "1.5.0", "override": true, "reason": "test"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let halt = w.server.admin().post_json(
        "/api/admin/channels/stable/halt",
        &serde_json::json!({"reason": "test: the fix is not reachable yet"}),
    );
    assert_eq!(halt.status, 200, "{}", halt.text());

    // Default: it starts, keeps running and updating, but takes no task.
    let mut refusing = v1_agent(&w, &[]);
    refusing.wait_until("v1 up and refusing tasks", Duration::from_secs(60), |a| {
        a.serves_version(V1) && refuses_tasks(a)
    });
    assert!(
        refusing.log().contains("below_minimum_refused"),
        "a logged event: {}",
        refusing.log()
    );
    // The operator's choice: serve tasks anyway (the documented option, and the older flag).
    let serving_dir = Sandbox::new();
    let mut serving = w
        .agent(V1)
        .dir(serving_dir.path())
        .env(&[("SERVE_BELOW_MINIMUM", "true")])
        .start();
    let forced_dir = Sandbox::new();
    let mut forced = w
        .agent(V1)
        .dir(forced_dir.path())
        .flags(&["--force-start"])
        .start();
    for agent in [&serving, &forced] {
        agent.wait_until(
            "v1 serving tasks below the minimum",
            Duration::from_secs(60),
            |a| a.serves_version(V1) && a.log().contains("below_minimum_forced"),
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    for agent in [&mut refusing, &mut serving, &mut forced] {
        assert_eq!(agent.exited(), None, "still running: {}", agent.log());
    }
    assert!(refuses_tasks(&refusing), "{}", refusing.log());
    assert!(!refuses_tasks(&serving), "{}", serving.log());
    assert!(!refuses_tasks(&forced), "{}", forced.log());

    // The fix becomes reachable: agents below the minimum install it, outside the cohort too,
    // and the updated one takes tasks again.
    let resume = w.server.admin().post_json(
        "/api/admin/channels/stable/resume",
        &serde_json::json!({"reason": "test: the fix is out"}),
    );
    assert_eq!(resume.status, 200, "{}", resume.text());
    for agent in [&refusing, &serving, &forced] {
        agent.wait_until("v2 installed and serving", Duration::from_secs(120), |a| {
            a.serves_version(V2)
                && a.installed_version()
                    .starts_with(&format!("worker-agent {V2} "))
        });
    }
    refusing.wait_until("v2 takes tasks", Duration::from_secs(30), |a| {
        !refuses_tasks(a)
    });
    let success = format!("success {V1}->{V2}");
    refusing.wait_until("the three reports", REPORT_WAIT, |_| {
        w.server.reports().matches(&success).count() == 3
    });
}

#[test]
fn one_updater_per_install_a_second_instance_says_so() {
    let w = World::new();
    let first = v1_agent(&w, &[]);
    first.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    // A second supervisor on the same install and state directory (another metrics port).
    let mut args: Vec<String> = first.args().to_vec();
    let port = args
        .iter()
        .position(|a| a == "--metrics-listen")
        .expect("flag")
        + 1;
    args[port] = format!("127.0.0.1:{}", e2e::fleet::free_port());
    let second = std::process::Command::new(&first.install_path)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second instance");
    std::thread::sleep(Duration::from_secs(2));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let output = second.wait_with_output().expect("second output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("holds") && stderr.contains("runs without updating"),
        "{stderr}"
    );
    assert!(stderr.contains("\"updater\":false"), "{stderr}");

    // `update apply` refuses too while the agent runs.
    let apply = std::process::Command::new(&first.install_path)
        .args([
            "update",
            "apply",
            "--update-server",
            &w.server.url,
            "--token",
            &w.server.worker_token,
        ])
        .arg("--root")
        .arg(&w.trust.root_path)
        .arg("--state-dir")
        .arg(&first.state_dir)
        .output()
        .expect("update apply");
    assert_eq!(apply.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&apply.stderr).contains("another updater"),
        "{apply:?}"
    );
}

#[test]
fn the_agent_follows_a_root_rotation_to_trust_a_new_release_key() {
    let w = World::new();
    let agent = v1_agent(&w, &[]);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    // Root 2 replaces the release key; only an agent that walked 1 -> 2 accepts releases now.
    let new_release_key = manifests::PrivateKey::generate("release-2").expect("key");
    let mut root = w.trust.root.signed.clone();
    root.version = 2;
    let public = new_release_key.public();
    root.keys.insert(
        public.keyid.clone(),
        manifests::Key {
            scheme: public.scheme,
            public: public.public,
            extra: Default::default(),
        },
    );
    root.roles.release = manifests::Role::new(vec![public.keyid], 1);
    let rotated = manifests::Signed::sign(root, &[&w.trust.root_key]).expect("sign root 2");
    // Dropping the old release key weakens the release role: the server needs allow_weaker.
    let reply = w.server.admin().post_bytes(
        "/api/admin/roots?allow_weaker=true",
        rotated.to_json_pretty().expect("json"),
    );
    assert_eq!(reply.status, 201, "{}", reply.text());
    let v2 = agent_at_version(V2);
    let (release, _) = w.trust.sign_release(V2, "0.0.0", &[(PLATFORM, &v2)]);
    let release = manifests::Signed::sign(release.signed, &[&new_release_key])
        .expect("sign with the new key");
    w.server.publish(&release, &[&v2]);
    w.server.promote("stable", V2, 100);
    agent.wait_until("v2 committed", Duration::from_secs(90), |a| {
        a.serves_version(V2) && a.installed_version().starts_with("worker-agent 2.0.0 ")
    });
    let trust: serde_json::Value = serde_json::from_slice(
        &std::fs::read(agent.state_dir.join("trust.json")).expect("trust.json"),
    )
    .expect("json");
    assert_eq!(
        trust["root"]["signed"]["version"], 2,
        "the agent persisted root 2"
    );
}
