//! Signals during probation, with real processes: a stop is not a verdict on the new version.
//! Ctrl-C (SIGINT to the agent's process group) or SIGTERM to the supervisor while a good
//! release is in probation must stop the agent promptly (a bounded drain, logged), record the
//! attempt as `deferred`/`probation_interrupted` (no quarantine, nothing the server counts
//! towards auto-halt), keep the staged release, and probe it again on the next start, where it
//! commits.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::Agent;
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// Probation of the new version: long enough that an agent which ignores the signal until the
/// verdict is told apart from one that stops at once.
const PROBATION_SECS: &str = "30";

/// How long an idle agent may take to stop once signalled (its worker has no task to drain).
const PROMPT_STOP: Duration = Duration::from_secs(12);

fn sha256(path: &Path) -> String {
    manifests::hash_file(path).expect("hash").0
}

/// A world whose server halts a channel at the first worker that fails or rolls back its
/// release: any report counted as a release defect would halt it.
fn strict_world() -> World {
    World::builder()
        .server_args(&["--auto-halt-failures", "1"])
        .start()
}

/// A v1 agent (its own process group) with v2 rolled out and held in probation.
fn agent_with_v2_in_probation(w: &World) -> Agent {
    let agent = w
        .agent(V1)
        .flags(&["--probation-secs", PROBATION_SECS])
        .env(&[("RUNNER_DRAIN_TIMEOUT_SECS", "5")])
        .own_process_group()
        .start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    w.roll_out(V2, &agent_at_version(V2), 100);
    agent.wait_until("v2 held in probation", Duration::from_secs(90), |a| {
        a.serves_version(V2) && a.log().contains("holding it in probation")
    });
    agent
}

/// Waits until the supervisor exits; returns how long that took.
fn wait_for_exit(agent: &mut Agent, signalled: Instant, what: &str) -> Duration {
    while signalled.elapsed() < PROMPT_STOP {
        if let Some(status) = agent.exited() {
            assert!(
                status.success(),
                "{what}: the supervisor exited with {status}"
            );
            return signalled.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what}: the supervisor still runs {PROMPT_STOP:?} after the signal (probation is {PROBATION_SECS} s)\n--- agent log ---\n{}",
        agent.log()
    );
}

/// After the stop: nothing quarantined, nothing installed, the staged release and its pending
/// record kept, the interruption queued for the next worker to report.
fn assert_interrupted_not_judged(agent: &Agent, v1_sha: &str) {
    let state = &agent.state_dir;
    let pending: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("pending.json")).expect("pending.json is kept"),
    )
    .expect("pending.json");
    assert_eq!(pending["to_version"], V2, "{pending:#}");
    let staged = pending["staged_path"].as_str().expect("staged_path");
    assert!(
        Path::new(staged).exists(),
        "the staged release is kept: {staged}"
    );
    assert_eq!(sha256(&agent.install_path), v1_sha, "nothing was installed");
    let trust: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("trust.json")).expect("trust.json"))
            .expect("trust.json");
    assert_eq!(
        trust["quarantined"],
        serde_json::json!([]),
        "an interrupted probation quarantines nothing"
    );
    let queued: Vec<serde_json::Value> = std::fs::read_dir(state.join("outbox"))
        .expect("outbox")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json"))
        .collect();
    assert!(
        queued
            .iter()
            .any(|o| o["outcome"] == "deferred" && o["reason"] == "probation_interrupted"),
        "the interruption is queued for reporting: {queued:#?}"
    );
    assert!(
        !queued.iter().any(|o| o["outcome"] == "rolled_back"),
        "{queued:#?}"
    );
}

/// Restarts the stopped agent: v2 is probed again and commits; the server has the interruption
/// and the success, no rollback, and the channel is not halted.
fn restart_and_commit(w: &World, agent: &mut Agent) {
    let v2_sha = sha256(&agent_at_version(V2));
    agent.restart_with_env(&[("RUNNER_DRAIN_TIMEOUT_SECS", "5")]);
    agent.wait_until(
        "v2 probed again, committed and serving",
        Duration::from_secs(120),
        |a| a.serves_version(V2) && sha256(&a.install_path) == v2_sha,
    );
    w.wait_for_report(
        agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    let reports = w.server.reports();
    assert!(
        reports.contains(&format!("deferred probation_interrupted {V1}->{V2}")),
        "{reports}"
    );
    assert!(!reports.contains("rolled_back"), "{reports}");
    assert!(!reports.contains("failure"), "{reports}");
    let status = w.server.admin().get("/api/admin/status").json();
    let stable = status["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == "stable")
        .expect("stable");
    assert_eq!(stable["halted"], false, "{status:#}");
    assert_eq!(stable["version"], V2, "{status:#}");
}

#[test]
fn ctrl_c_to_the_process_group_during_probation_defers_and_the_next_start_commits() {
    let w = strict_world();
    let mut agent = agent_with_v2_in_probation(&w);
    let v1_sha = sha256(&agent_at_version(V1));

    agent.signal_process_group("INT");
    let took = wait_for_exit(&mut agent, Instant::now(), "SIGINT to the process group");
    eprintln!("SIGINT to the process group in probation: supervisor exited after {took:?}");
    assert_interrupted_not_judged(&agent, &v1_sha);
    let log = agent.log();
    assert!(log.contains("probation interrupted"), "{log}");

    restart_and_commit(&w, &mut agent);
}

#[test]
fn sigterm_to_the_supervisor_during_probation_stops_it_within_its_bound_and_logs_the_wait() {
    let w = strict_world();
    let mut agent = agent_with_v2_in_probation(&w);
    let v1_sha = sha256(&agent_at_version(V1));
    let worker_pid = agent.ready().expect("ready")["pid"].as_u64().expect("pid");

    agent.signal_supervisor("TERM");
    let took = wait_for_exit(&mut agent, Instant::now(), "SIGTERM to the supervisor");
    eprintln!("SIGTERM to the supervisor in probation: exited after {took:?}");
    // It said what it waited for (the worker in probation, by pid) and for how long at most:
    // RUNNER_DRAIN_TIMEOUT_SECS (5) + 30 s.
    let log = agent.log();
    let wait = log
        .lines()
        .find(|l| l.contains("stopping: waiting for"))
        .unwrap_or_else(|| panic!("no wait logged:\n{log}"));
    assert!(wait.contains(&format!("\"pid\":{worker_pid}")), "{wait}");
    assert!(wait.contains("\"limit_s\":35"), "{wait}");
    assert!(wait.contains(V2), "{wait}");
    assert!(took < Duration::from_secs(35));
    assert!(
        !Path::new(&format!("/proc/{worker_pid}")).exists(),
        "the worker in probation stopped too"
    );
    assert_interrupted_not_judged(&agent, &v1_sha);

    restart_and_commit(&w, &mut agent);
}
