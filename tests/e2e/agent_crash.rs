//! Crash consistency: `kill -9` the supervisor and the worker at each phase of an update, then
//! start the agent again. The install path must hold a complete, verified binary (old or new)
//! every time, and the update must then complete and be reported as the one `success` it is
//! (no `failure`, no `rolled_back`), whatever instant the crash hit.

use std::path::Path;
use std::time::Duration;

use e2e::fleet::{Agent, Server, Trust, PLATFORM};
use e2e::{agent_at_version, Sandbox};

fn sha256(path: &Path) -> String {
    manifests::hash_file(path).expect("hash").0
}

fn crash_at(phase: &str) {
    let sandbox = Sandbox::new();
    let trust = Trust::new(sandbox.path());
    let server = Server::start(sandbox.path(), &trust, &[]);
    let (v1, v2) = (agent_at_version("1.0.0"), agent_at_version("2.0.0"));
    let (v1_sha, v2_sha) = (sha256(&v1), sha256(&v2));
    let mut agent = Agent::start_with_env(
        sandbox.path(),
        &server,
        &trust,
        &v1,
        "stable",
        &[],
        &[("WORKER_AGENT_FAILPOINT", phase)],
    );
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version("1.0.0")
    });
    let (release, _) = trust.sign_release("2.0.0", "0.0.0", &[(PLATFORM, &v2)]);
    server.publish(&release, &[&v2]);
    server.promote("stable", "2.0.0", 100);
    let marker = agent.state_dir.join(format!("failpoint-{phase}"));
    agent.wait_until(
        &format!("the {phase} failpoint"),
        Duration::from_secs(60),
        |_| marker.exists(),
    );

    agent.kill9_all();
    std::thread::sleep(Duration::from_millis(500));
    // At this instant nothing runs: the install path must be a complete, verified binary.
    let installed = sha256(&agent.install_path);
    assert!(
        installed == v1_sha || installed == v2_sha,
        "after kill -9 in {phase}, the install path is neither v1 nor v2 (sha256 {installed})"
    );
    let version = agent.installed_version();
    assert!(
        version.starts_with("worker-agent 1.0.0 ") || version.starts_with("worker-agent 2.0.0 "),
        "{version}"
    );
    let at_crash = if installed == v1_sha { "v1" } else { "v2" };

    std::fs::remove_file(&marker).expect("remove marker");
    agent.restart_with_env(&[]);
    // v2 serves from its staged file during probation; the install path follows on commit.
    agent.wait_until(
        "v2 committed and serving after the restart",
        Duration::from_secs(90),
        |a| a.serves_version("2.0.0") && sha256(&a.install_path) == v2_sha,
    );
    let leftovers: Vec<String> = std::fs::read_dir(agent.install_path.parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".staged") || n.ends_with(".part") || n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "after {phase}: leftovers {leftovers:?}"
    );
    agent.wait_until(
        "the update's success reported",
        Duration::from_secs(60),
        |_| server.reports().contains("success 1.0.0->2.0.0"),
    );
    let reports = server.reports();
    eprintln!(
        "kill -9 matrix | {phase} | install path at the crash: {at_crash} | after the restart: v2 serving, install path v2 | reports: {}",
        reports.replace('\n', "; ")
    );
    assert!(
        !reports.contains("failure") && !reports.contains("rolled_back"),
        "after kill -9 in {phase}, the installed update is reported as a failure:\n{reports}\n--- agent log ---\n{}",
        agent.log()
    );
}

#[test]
fn kill_9_while_downloading() {
    crash_at("downloading");
}

#[test]
fn kill_9_while_verifying() {
    crash_at("verifying");
}

#[test]
fn kill_9_while_swapping() {
    crash_at("swapping");
}

/// After the rename of the new binary over the install path, before `pending.json` is cleared.
#[test]
fn kill_9_after_the_swap() {
    crash_at("swapped");
}

#[test]
fn kill_9_while_restarting() {
    crash_at("restarting");
}

#[test]
fn kill_9_in_probation() {
    crash_at("probation");
}
