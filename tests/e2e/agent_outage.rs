//! An update-server outage never takes a worker offline (issue 11 item 1): with the real
//! `update-server` stopped (or never reachable), a starting agent serves the ESUP Manager at
//! once, and a release in probation during the outage is judged on its own health, committed,
//! and reported once the server is back.

use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::{free_port, metric};
use e2e::manager::{free_port_range, runner_env};
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// Whether the runner instance on `port` answers `GET /runner/ping` with 200.
fn pings(port: u16) -> bool {
    reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/runner/ping"))
        .timeout(Duration::from_secs(1))
        .send()
        .is_ok_and(|r| r.status() == 200)
}

/// Waits until `/runner/ping` on `port` answers; the time it took from `since`.
#[track_caller]
fn time_to_ping(port: u16, since: Instant, limit: Duration) -> Duration {
    while since.elapsed() < limit {
        if pings(port) {
            return since.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("/runner/ping on port {port} did not answer within {limit:?}");
}

#[test]
fn an_agent_started_while_the_update_server_is_down_serves_the_manager_at_once() {
    let w = World::builder().with_manager().start();
    let base = free_port_range(1);
    // Nothing listens there: every connection to the "update server" is refused.
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    // Built before the clock starts: the figure is the agent's start-up, not cargo's.
    agent_at_version(V1);
    let started = Instant::now();
    let agent = w.runner(V1, base).via(&unreachable).start();
    let elapsed = time_to_ping(base, started, Duration::from_secs(30));
    eprintln!(
        "measured: agent start to first /runner/ping with the update server down: {} ms",
        elapsed.as_millis()
    );
    w.manager().wait_until(
        "the runner registered with the Manager",
        Duration::from_secs(30),
        |m| m.runners().len() == 1,
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} to serve /runner/ping"
    );
    // The worker is up (ready, /healthz) and still tries the update server in the background.
    agent.wait_until("the worker is ready", Duration::from_secs(10), |a| {
        a.serves_version(V1)
    });
    agent.wait_until(
        "registration retried in the background",
        Duration::from_secs(10),
        |a| {
            a.log()
                .matches("registration with the update server failed; retrying")
                .count()
                >= 2
        },
    );
}

#[test]
fn a_release_in_probation_while_the_update_server_is_down_is_committed_then_reported() {
    // A fixed port, so the server comes back where the agent looks for it.
    let listen = format!("127.0.0.1:{}", free_port());
    let mut w = World::builder()
        .with_manager()
        .server_args(&["--listen", &listen])
        .start();
    let base = free_port_range(1);
    let env = runner_env(w.manager(), base, &w.storage);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The supervisor stops right after starting v2 in probation: the kill -9 below then leaves
    // a pending update that the restarted supervisor probes again.
    agent_at_version(V1);
    let started = Instant::now();
    let mut agent = w
        .runner(V1, base)
        .env(&[("WORKER_AGENT_FAILPOINT", "restarting")])
        .start();
    let baseline = time_to_ping(base, started, Duration::from_secs(30));
    eprintln!(
        "measured: agent start to first /runner/ping with the update server up (baseline): {} ms",
        baseline.as_millis()
    );
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    w.roll_out(V2, &agent_at_version(V2), 100);
    let marker = agent.state_dir.join("failpoint-restarting");
    agent.wait_until("v2 staged and started", Duration::from_secs(90), |_| {
        marker.exists()
    });
    agent.kill9_all();
    std::fs::remove_file(&marker).expect("remove marker");

    // The outage: the agent restarts (v2 in probation again) while the server is down.
    w.server.stop();
    let registrations = w.manager().registrations();
    let restarted = Instant::now();
    agent.restart_with_env(&env);
    let elapsed = time_to_ping(base, restarted, Duration::from_secs(30));
    eprintln!(
        "measured: restart to first /runner/ping (v2 in probation, update server down): {} ms",
        elapsed.as_millis()
    );
    agent.wait_until(
        "v2 committed during the outage",
        Duration::from_secs(60),
        |a| {
            let log = a.log();
            assert!(
                !log.contains("probation failed; rolling back"),
                "v2 was rolled back during the outage:\n{log}"
            );
            a.serves_version(V2) && a.installed_is(V2)
        },
    );
    eprintln!(
        "measured: restart to v2 committed (update server down): {} ms",
        restarted.elapsed().as_millis()
    );
    w.manager().wait_until(
        "v2 registered with the Manager",
        Duration::from_secs(30),
        |m| m.registrations() > registrations,
    );
    let log = agent.log();
    assert!(log.contains("using the cached handshake"), "{log}");
    // Ready meant: its runner port answered and its self-check (real ffmpeg) passed.
    assert!(log.contains("probation self-check passed"), "{log}");

    // The server comes back: the success is reported, nothing was rolled back.
    w.server.start_again();
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    let reports = w.server.reports();
    assert!(!reports.contains("rolled_back"), "{reports}");
    assert_eq!(agent.quarantined(), serde_json::json!([]));
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "worker_update_success_total"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("worker_update_rollback_total{"),
        "{metrics}"
    );
    let log = agent.log();
    assert!(!log.contains("not_ready"), "{log}");
}
