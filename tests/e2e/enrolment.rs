//! Per-worker enrolment (issue 12 item 4) with the real binaries: join tokens made with
//! `worker-release enroll-token`, workers enrolling once for their own credential, every report
//! bound to the credential that sent it, and auto-halt / the stable gate counting only enrolled
//! workers that really downloaded the release.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::{Api, PLATFORM};
use e2e::world::World;
use manifests::Timestamp;

/// A server without the shared worker token (enrolment only), with `args`, and the admin token
/// in `admin.token` for the CLI.
fn enrolment_world(args: &[&str]) -> World {
    let world = World::builder().enrolment_only().server_args(args).start();
    world
        .sandbox
        .write("admin.token", format!("{}\n", world.server.admin_token));
    world
}

/// `worker-release COMMAND... --server URL --token-file admin.token ARGS...`.
fn admin_cli(w: &World, command: &[&str], args: &[&str]) -> e2e::Run {
    let mut all = command.to_vec();
    all.extend(["--server", &w.server.url, "--token-file", "admin.token"]);
    all.extend_from_slice(args);
    w.sandbox.release_cli(&all)
}

/// `worker-release enroll-token ARGS...` with the admin token: the join token it prints.
fn join_token(w: &World, args: &[&str]) -> String {
    let token = admin_cli(w, &["enroll-token"], args)
        .success()
        .trim()
        .to_owned();
    assert!(token.starts_with("wjt-"), "not a join token: {token:?}");
    token
}

/// `POST /api/workers/enroll` for `worker_id` with `join_token`.
fn enrol(w: &World, join_token: &str, worker_id: &str) -> e2e::fleet::Reply {
    Api::new(&w.server.url, Some(join_token)).post_json(
        "/api/workers/enroll",
        &serde_json::json!({"worker_id": worker_id, "hostname": "test"}),
    )
}

/// Enrols `worker_id` and returns an API client with its credential.
fn enrolled(w: &World, join_token: &str, worker_id: &str) -> Api {
    let reply = enrol(w, join_token, worker_id);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let answer = reply.json();
    assert_eq!(answer["worker_id"], worker_id);
    let credential = answer["credential"].as_str().expect("credential");
    Api::new(&w.server.url, Some(credential))
}

/// A report body.
fn report(worker_id: &str, to: &str, outcome: &str, reason: &str) -> serde_json::Value {
    serde_json::json!({"worker_id": worker_id, "correlation_id": format!("c-{worker_id}-{outcome}"),
        "from_version": "1.3.0", "to_version": to, "outcome": outcome, "reason": reason,
        "duration_ms": 10, "at": Timestamp::now().to_string(), "channel": "canary"})
}

#[track_caller]
fn assert_refused(reply: &e2e::fleet::Reply, status: u16, reason: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.json()["reason"], reason, "{}", reply.text());
}

fn halted(api: &Api, worker_id: &str) -> bool {
    let reply = api.latest("canary", "1.3.0", worker_id);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["channel"]["signed"]["halted"]
        .as_bool()
        .expect("halted flag")
}

/// The attack of the issue: one worker's credential sending reports under made-up worker ids
/// (three distinct "failed workers" halted any channel with the shared token), and fake
/// successes (which opened the stable gate). With enrolment the made-up ids are refused
/// (`403 worker_mismatch`) and count for nothing, and the worker's own reports count only once
/// it really downloaded the release.
#[test]
fn forged_reports_under_an_enrolled_credential_neither_halt_nor_open_the_gate() {
    let w = enrolment_world(&["--auto-halt-failures", "1", "--soak", "0s"]);
    let artifact = w.sandbox.write(
        "artifacts/agent-1.4.0",
        "#!/bin/sh\necho 1.4.0\n".repeat(2000),
    );
    w.publish("1.4.0", &[(PLATFORM, &artifact)]);
    w.server.promote("canary", "1.4.0", 100);
    // Without --worker-token-file there is no shared token to hold.
    assert_refused(
        &w.server.worker().latest("canary", "1.3.0", "w1"),
        401,
        "unauthorized",
    );

    let join = join_token(
        &w,
        &["--channel", "canary", "--uses", "1", "--expires", "1h"],
    );
    let w1 = enrolled(&w, &join, "w1");
    assert!(!halted(&w1, "w1"));
    for forged in ["c1", "c2", "c3"] {
        let reply = w1.post_json(
            "/api/worker-updates/report",
            &report(forged, "1.4.0", "rolled_back", "died_in_probation"),
        );
        assert_refused(&reply, 403, "worker_mismatch");
        // Nor may it register or poll as another worker, or on another channel.
        let reply = w1.latest("canary", "1.3.0", forged);
        assert_refused(&reply, 403, "worker_mismatch");
    }
    assert_refused(&w1.latest("stable", "1.3.0", "w1"), 403, "channel_mismatch");
    assert!(!halted(&w1, "w1"), "forged worker ids halted the channel");

    // Its own failure for a release it never downloaded is stored, and counts for nothing
    // (with --auto-halt-failures 1 a counted one would halt the channel).
    let reply = w1.post_json(
        "/api/worker-updates/report",
        &report("w1", "1.4.0", "rolled_back", "died_in_probation"),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(
        !halted(&w1, "w1"),
        "a failure without a download halted the channel"
    );

    // A fake success does not open the stable gate either.
    let reply = w1.post_json(
        "/api/worker-updates/report",
        &report("w1", "1.4.0", "success", ""),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    let promote = |w: &World| {
        w.server.admin().post_json(
            "/api/admin/channels/stable/promote",
            &serde_json::json!({"version": "1.4.0", "percent": 100, "reason": "gate"}),
        )
    };
    assert_refused(&promote(&w), 409, "soak");

    // Once it downloaded the release with its credential, its success counts.
    let (sha, _) = manifests::hash_file(&artifact).expect("hash");
    let download = w1.get(&format!("/api/worker-updates/artifacts/{sha}"));
    assert_eq!(download.status, 200, "{}", download.text());
    let reply = w1.post_json(
        "/api/worker-updates/report",
        &report("w1", "1.4.0", "success", ""),
    );
    assert_eq!(reply.status, 202, "{}", reply.text());
    let promoted = promote(&w);
    assert_eq!(promoted.status, 200, "{}", promoted.text());
    // The refusals were logged with their reason.
    assert!(w.server.log().contains("worker_mismatch"));
}

/// A real agent enrols with a join token, keeps its credential (0600) in its state directory,
/// does not enrol again after a restart (its one-use join token is spent: a second enrolment
/// would be refused), updates 1.0.0 -> 2.0.0, and the success is attributed to its enrolled id.
#[test]
fn an_agent_enrols_once_and_its_update_is_attributed_to_its_enrolled_id() {
    let w = enrolment_world(&[]);
    let join = join_token(
        &w,
        &["--channel", "stable", "--uses", "1", "--expires", "1h"],
    );
    let mut agent = w
        .agent("1.0.0")
        .enrol_with(&join)
        .env(&[("UPDATE_RETRY_BACKOFF_SECS", "1")])
        .start();
    let credential = agent.state_dir.join("worker.credential");
    agent.wait_until("enrolled", Duration::from_secs(60), |_| credential.exists());
    let mode = std::fs::metadata(&credential)
        .expect("credential")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "credential mode {mode:o}");
    let worker_id = std::fs::read_to_string(agent.state_dir.join("worker_id"))
        .expect("worker id")
        .trim()
        .to_owned();
    agent.wait_until("1.0.0 serving", Duration::from_secs(60), |a| {
        a.serves_version("1.0.0")
    });
    let stored = std::fs::read_to_string(&credential).expect("credential");

    agent.kill9_all();
    let join_file = w.sandbox.join("join.token");
    agent.restart_with_env(&[
        ("WORKER_ENROLL_TOKEN_FILE", &join_file.to_string_lossy()),
        ("UPDATE_RETRY_BACKOFF_SECS", "1"),
    ]);
    agent.wait_until("1.0.0 serving again", Duration::from_secs(60), |a| {
        a.serves_version("1.0.0")
    });
    assert_eq!(
        std::fs::read_to_string(&credential).expect("credential"),
        stored,
        "the credential changed across the restart"
    );

    w.roll_out("2.0.0", &agent_at_version("2.0.0"), 100);
    w.wait_for_install(&agent, "1.0.0", "2.0.0");
    let audit = w.server.admin().get("/api/admin/audit?limit=500").json();
    let entries = audit["entries"].as_array().expect("entries");
    let enrolments: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "worker_enroll")
        .collect();
    assert_eq!(enrolments.len(), 1, "enrolled more than once: {audit}");
    assert_eq!(enrolments[0]["actor"], worker_id.as_str());
    let success = entries
        .iter()
        .find(|e| {
            e["kind"] == "report"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("success") && d.contains("1.0.0->2.0.0"))
        })
        .unwrap_or_else(|| panic!("no success report: {audit}"));
    assert_eq!(success["actor"], worker_id.as_str(), "{success}");
    // The agent never fell back to a shared token, and never re-enrolled.
    let log = agent.log();
    assert!(!log.contains("enroll_token_used_up"), "{log}");
}

/// Join tokens that are used up, expired or revoked are refused with their reason; a worker
/// enrolled already cannot be enrolled again (its identity would change hands) until it is
/// forgotten, and a forgotten worker's credential is refused.
#[test]
fn spent_expired_and_revoked_join_tokens_and_forgotten_credentials_are_refused() {
    let w = enrolment_world(&[]);
    let once = join_token(&w, &["--uses", "1"]);
    let a = enrolled(&w, &once, "worker-a");
    assert_refused(&enrol(&w, &once, "worker-b"), 403, "enroll_token_used_up");

    let short = join_token(&w, &["--expires", "1s"]);
    let expired_at = Instant::now() + Duration::from_secs(2);
    while Instant::now() < expired_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_refused(&enrol(&w, &short, "worker-c"), 403, "enroll_token_expired");

    let created = admin_cli(&w, &["enroll-token"], &["--uses", "5", "--json"]).success();
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let revoked = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    admin_cli(&w, &["enroll-token", "revoke"], &[&id]).success();
    assert_refused(
        &enrol(&w, &revoked, "worker-d"),
        403,
        "enroll_token_revoked",
    );
    let list = admin_cli(&w, &["enroll-token", "list"], &[]).success();
    for state in ["used_up", "expired", "revoked"] {
        assert!(list.contains(state), "{state} missing:\n{list}");
    }
    assert!(!list.contains(&revoked), "the list shows a token:\n{list}");
    // An unknown join token is no join token.
    assert_refused(
        &enrol(&w, "wjt-0000000000000000000000000000", "worker-e"),
        401,
        "unauthorized",
    );

    let fresh = join_token(&w, &["--uses", "2"]);
    assert_refused(&enrol(&w, &fresh, "worker-a"), 409, "already_enrolled");
    assert_eq!(a.latest("stable", "1.0.0", "worker-a").status, 200);
    admin_cli(&w, &["worker", "forget"], &["worker-a"]).success();
    assert_refused(
        &a.latest("stable", "1.0.0", "worker-a"),
        401,
        "credential_revoked",
    );
    // Forgotten, it may enrol again, with a new credential.
    let again = enrolled(&w, &fresh, "worker-a");
    assert_eq!(again.latest("stable", "1.0.0", "worker-a").status, 200);
}

/// Waits (at most 30 s) for the agent's supervisor to exit and returns its exit code.
#[track_caller]
fn exit_code(agent: &mut e2e::fleet::Agent, what: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = agent.exited() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: the agent still runs after 30 s\n{}", agent.log());
}

/// What the agent cannot enrol with is refused once, exit 78 (restarting cannot mend it), one
/// line with the variable or the server's reason: a join token file others can read, a join
/// token next to a shared token, a spent join token.
#[test]
fn an_agent_refuses_an_unusable_join_token_with_exit_78_and_the_reason() {
    let w = enrolment_world(&[]);
    let join = join_token(&w, &["--uses", "1"]);
    // Spend it.
    let _first = enrolled(&w, &join, "somebody-else");
    let start = |dir: &str, mode: u32, env: &[(&str, &str)], token: &str| {
        let dir = w.sandbox.join(dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("join.token");
        std::fs::write(&file, format!("{join}\n")).expect("join token");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let mut all = vec![(
            "WORKER_ENROLL_TOKEN_FILE",
            file.to_string_lossy().into_owned(),
        )];
        all.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        e2e::fleet::Agent::start_at(
            &dir,
            &w.server.url,
            token,
            &w.trust,
            &agent_at_version("1.0.0"),
            "stable",
            &[],
            &env,
            false,
        )
    };
    let one_line = |agent: &e2e::fleet::Agent, needles: &[&str]| {
        let log = agent.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one error line, not {lines:#?}");
        for needle in needles {
            assert!(
                lines[0].contains(needle),
                "{needle:?} missing: {}",
                lines[0]
            );
        }
        assert!(!log.contains(&join), "the join token is printed: {log}");
    };
    let mut open = start("open", 0o644, &[], "");
    assert_eq!(exit_code(&mut open, "a 0644 join token file"), Some(78));
    one_line(&open, &["WORKER_ENROLL_TOKEN_FILE", "chmod 600"]);

    let mut both = start("both", 0o600, &[], &w.server.worker_token);
    assert_eq!(
        exit_code(&mut both, "join token and shared token"),
        Some(78)
    );
    one_line(&both, &["WORKER_ENROLL_TOKEN_FILE", "WORKER_TOKEN"]);

    let mut spent = start("spent", 0o600, &[], "");
    assert_eq!(exit_code(&mut spent, "a spent join token"), Some(78));
    one_line(&spent, &["enroll_token_used_up"]);
    assert!(!w.sandbox.join("spent/state/worker.credential").exists());
}
