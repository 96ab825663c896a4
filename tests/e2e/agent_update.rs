//! `worker-agent` self-update with real processes: the real update server, agent binaries built
//! from this source at two versions, and deliberately bad "releases" that are just executables.

use std::time::Duration;

use e2e::fleet::{Agent, Server, Trust, PLATFORM};
use e2e::{agent_at_version, Sandbox};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

struct World {
    sandbox: Sandbox,
    trust: Trust,
    server: Server,
}

impl World {
    fn new() -> Self {
        let sandbox = Sandbox::new();
        let trust = Trust::new(sandbox.path());
        let server = Server::start(sandbox.path(), &trust, &[]);
        World { sandbox, trust, server }
    }

    /// Signs, publishes and promotes (100 %, stable) `artifact` as `version`.
    fn roll_out(&self, version: &str, artifact: &std::path::Path) {
        let (release, _) = self.trust.sign_release(version, "0.0.0", &[(PLATFORM, artifact)]);
        self.server.publish(&release, &[artifact]);
        self.server.promote("stable", version, 100);
    }

    fn agent(&self, extra: &[&str]) -> Agent {
        Agent::start(self.sandbox.path(), &self.server, &self.trust, &agent_at_version(V1), "stable", extra)
    }

    /// The audit trail's report lines.
    fn reports(&self) -> String {
        let audit = self.server.admin().get("/api/admin/audit?limit=200").json();
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["kind"] == "report")
            .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[track_caller]
    fn wait_for_report(&self, agent: &Agent, needle: &str) {
        agent.wait_until(&format!("a report containing {needle:?}"), Duration::from_secs(60), |_| {
            self.reports().contains(needle)
        });
    }
}

fn metric(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(name_and_labels) && line[name_and_labels.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn happy_path_v1_to_v2_the_new_process_really_runs_v2() {
    let w = World::new();
    let agent = w.agent(&[]);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| a.serves_version(V1));
    let v1_pid = agent.ready().expect("ready")["pid"].as_u64();

    w.roll_out(V2, &agent_at_version(V2));
    agent.wait_until("v2 serving", Duration::from_secs(90), |a| a.serves_version(V2));
    w.wait_for_report(&agent, &format!("success {V1}->{V2}"));

    assert!(agent.installed_version().starts_with(&format!("worker-agent {V2} (commit ")), "{}", agent.installed_version());
    let previous = agent.install_path.with_file_name("worker-agent.previous");
    let output = std::process::Command::new(&previous).arg("--version").output().expect("previous runs");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with(&format!("worker-agent {V1} ")));
    assert_ne!(agent.ready().expect("ready")["pid"].as_u64(), v1_pid, "a new process serves");
    let metrics = agent.metrics();
    assert_eq!(metric(&metrics, &format!("worker_version_current{{version=\"{V2}\"}}")), Some(1.0), "{metrics}");
    agent.wait_until("success counted", Duration::from_secs(10), |a| {
        metric(&a.metrics(), "worker_update_success_total") == Some(1.0)
    });
    let metrics = agent.metrics();
    assert_eq!(metric(&metrics, "worker_update_attempt_total"), Some(1.0), "{metrics}");
    assert!(metric(&metrics, "worker_update_download_bytes_total").unwrap_or(0.0) > 1_000_000.0, "{metrics}");
    assert!(metric(&metrics, "worker_update_last_check_timestamp_seconds").unwrap_or(0.0) > 1.7e9);
    assert!(metric(&metrics, "worker_update_manifest_expiry_timestamp_seconds").unwrap_or(0.0) > 1.7e9);
    // One correlation id follows the attempt through the agent's and the server's logs.
    let reports = w.reports();
    let correlation = reports
        .split("correlation ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("correlation id in the report")
        .to_owned();
    assert!(agent.log().contains(&correlation), "agent log lacks {correlation}");
    assert!(w.server.log().contains(&correlation), "server log lacks {correlation}");
}
