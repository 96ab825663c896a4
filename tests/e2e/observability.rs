//! Prometheus and Grafana for real: `promtool` checks and unit-tests the alert rules, and a real
//! Prometheus (Debian package `prometheus`) on loopback scrapes a real update server and two
//! real agents through an update cycle (a bad canary release rolled back, a release for another
//! platform refused, a good one installed on canary then stable, canary halted), the stable
//! agent running its ESUP runner layer against the `FakeManager` fixture, which then dispatches
//! it two tasks whose source is missing (they fail). Then every
//! expression of the Grafana dashboard must return data from that Prometheus, the rules must be
//! loaded and healthy, and the alerts the cycle provokes must be the ones Prometheus reports.
//!
//! Grafana variables are replaced before querying, as Grafana would for a wide dashboard range:
//! `$__rate_interval` -> `5m`, `$__range` -> `1h`, `$__interval` -> `15s`, `$channel` (All) -> `.*`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::fleet::{free_port, metric, system_tool, Agent, Server, Trust, PLATFORM};
use e2e::manager::{free_port_range, runner_api, runner_env, task_body, FakeManager, RUNNER_TOKEN};
use e2e::{agent_at_version, workspace_root, Sandbox};

use crate::dashboard::{
    dashboard, dashboard_exprs, substitute_grafana_variables, variable_queries,
};

const RULES: &str = "wiki/alerts/worker-updates.rules.yml";
const RULE_TESTS: &str = "wiki/alerts/worker-updates.test.yml";
const METRICS_DOC: &str = "wiki/analytics/metrics-and-observability.md";
const PACKAGE: &str = "prometheus";

const V1: &str = "1.0.0";
const BAD: &str = "1.1.0";
const OTHER_PLATFORM: &str = "1.2.0";
const V2: &str = "2.0.0";

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Names declared in the rule file by `- alert: NAME` (or `- record: NAME`) lines.
fn rule_names(rules: &str, kind: &str) -> Vec<String> {
    let prefix = format!("- {kind}:");
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// For each `alertname` of the promtool test file: (has a case where it fires, has a quiet one).
fn alert_test_cases(tests: &str) -> BTreeMap<String, (bool, bool)> {
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in tests.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let Some(expected) = line.strip_prefix("exp_alerts:") {
            let name = current
                .take()
                .expect("every exp_alerts follows an alertname");
            let entry = cases.entry(name).or_default();
            if expected.trim() == "[]" {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
        }
    }
    cases
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_tested_firing_and_quiet() {
    let promtool = system_tool("promtool", PACKAGE);
    let check = Command::new(&promtool)
        .args(["check", "rules", RULES])
        .current_dir(workspace_root())
        .output()
        .expect("run promtool check rules");
    let check_out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        check.status.success(),
        "promtool check rules {RULES}:\n{check_out}"
    );
    let rules = read(RULES);
    let alerts = rule_names(&rules, "alert");
    let records = rule_names(&rules, "record");
    assert!(
        check_out.contains(&format!(
            "SUCCESS: {} rules found",
            alerts.len() + records.len()
        )),
        "promtool found another number of rules than the file declares:\n{check_out}"
    );
    for required in [
        "WorkerUpdateFailureRateHigh",
        "WorkerVersionSkew",
        "WorkerRolloutStuck",
        "WorkerChannelHalted",
        "WorkerChannelStatementExpiring",
        "WorkerAgentsNotCheckingIn",
    ] {
        assert!(
            alerts.iter().any(|a| a == required),
            "{RULES} lacks {required}"
        );
    }

    let test = Command::new(&promtool)
        .args(["test", "rules", RULE_TESTS])
        .current_dir(workspace_root())
        .output()
        .expect("run promtool test rules");
    assert!(
        test.status.success(),
        "promtool test rules {RULE_TESTS}:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    let cases = alert_test_cases(&read(RULE_TESTS));
    let mut untested = Vec::new();
    for alert in &alerts {
        match cases.get(alert) {
            Some((true, true)) => {}
            Some((fires, quiet)) => untested.push(format!(
                "{alert}:{}{}",
                if *fires { "" } else { " no firing case" },
                if *quiet { "" } else { " no quiet case" }
            )),
            None => untested.push(format!("{alert}: no test at all")),
        }
    }
    assert!(
        untested.is_empty(),
        "{RULE_TESTS} must test every alert firing and quiet:\n{}",
        untested.join("\n")
    );
    let unknown: Vec<_> = cases.keys().filter(|n| !alerts.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "{RULE_TESTS} tests alerts the rule file lacks: {unknown:?}"
    );
}

/// A real Prometheus on loopback, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    client: reqwest::blocking::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `server` (job `update-server`) and `agents` (job
    /// `worker-agent`) every second, with the rule file loaded and evaluated every second.
    fn start(dir: &Path, server: &str, agents: &[&str]) -> Self {
        let binary = system_tool("prometheus", PACKAGE);
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let rules = workspace_root().join(RULES);
        let agents = agents
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - \"{}\"\n\
             scrape_configs:\n\
             \x20 - job_name: update-server\n    static_configs:\n      - targets: [\"{server}\"]\n\
             \x20 - job_name: worker-agent\n    static_configs:\n      - targets: [{agents}]\n",
            rules.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        // The port is picked free then released: another process may take it in between, so
        // try a few.
        for _ in 0..3 {
            let url = format!("http://127.0.0.1:{}", free_port());
            let stderr = std::fs::File::create(&log).expect("prometheus log");
            let mut child = Command::new(&binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!(
                    "--web.listen-address={}",
                    url.trim_start_matches("http://")
                ))
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start prometheus");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ready = client
                    .get(format!("{url}/-/ready"))
                    .send()
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return Prometheus {
                        child,
                        url,
                        log,
                        client,
                    };
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "prometheus did not become ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, or the error Prometheus gave.
    fn api(&self, path_and_query: &str) -> Result<serde_json::Value, String> {
        let response = self
            .client
            .get(format!("{}/api/v1/{path_and_query}", self.url))
            .send()
            .map_err(|e| format!("{path_and_query}: {e}"))?;
        let body: serde_json::Value = response
            .json()
            .map_err(|e| format!("{path_and_query}: not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        Ok(body["data"].clone())
    }

    /// An instant query at the current time: the samples, as (labels, value).
    fn query(&self, expr: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let data = self.api(&format!("query?query={}", url_encode(expr)))?;
        let value_of = |pair: &serde_json::Value| {
            pair[1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        Ok(match data["resultType"].as_str() {
            Some("scalar") => vec![(serde_json::Value::Null, value_of(&data["result"]))],
            _ => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sample| (sample["metric"].clone(), value_of(&sample["value"])))
                .collect(),
        })
    }

    /// `label -> value` of an instant query grouped by `label`.
    #[track_caller]
    fn values_by(&self, expr: &str, label: &str) -> BTreeMap<String, f64> {
        self.query(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .into_iter()
            .map(|(labels, value)| (labels[label].as_str().unwrap_or_default().to_owned(), value))
            .collect()
    }

    /// The single value of an instant query.
    #[track_caller]
    fn value(&self, expr: &str) -> Option<f64> {
        let samples = self.query(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        samples.first().map(|(_, v)| *v)
    }

    /// Alerts pending or firing: (alertname, a distinguishing label, state).
    fn alerts(&self) -> BTreeSet<(String, String, String)> {
        let data = self.api("alerts").expect("alerts");
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|alert| {
                let labels = &alert["labels"];
                (
                    labels["alertname"].as_str().unwrap_or_default().to_owned(),
                    labels["channel"]
                        .as_str()
                        .or(labels["version"].as_str())
                        .or(labels["instance"].as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    alert["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until `check` holds (polling every 250 ms), or panics with Prometheus's log.
    #[track_caller]
    fn wait_until(&self, what: &str, limit: Duration, mut check: impl FnMut(&Prometheus) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "timed out after {limit:?} waiting for: {what}\nalerts: {:?}\n--- prometheus log ---\n{}",
            self.alerts(),
            self.log()
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter (everything but RFC 3986 unreserved characters).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[track_caller]
fn wait_for_report(server: &Server, agent: &Agent, needle: &str) {
    agent.wait_until(
        &format!("a report containing {needle:?}"),
        Duration::from_secs(60),
        |_| server.reports().contains(needle),
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one update cycle, then what Prometheus saw of it
fn dashboard_queries_return_data_from_a_real_prometheus_after_an_update_cycle() {
    let started = Instant::now();
    // Built first, so the timings below are the cycle's.
    let (v1, v2) = (agent_at_version(V1), agent_at_version(V2));
    let built = started.elapsed();
    let sandbox = Sandbox::new();
    let trust = Trust::new(sandbox.path());
    let server = Server::start(sandbox.path(), &trust, &[]);
    std::fs::create_dir_all(sandbox.join("media")).expect("media dir");
    let manager = FakeManager::start(RUNNER_TOKEN, &sandbox.join("media"));
    let runner_port = free_port_range(1);
    let runner = runner_env(&manager, runner_port, &sandbox.join("storage"));
    let runner: Vec<(&str, &str)> = runner
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("RUNNER_TASK_TYPES", "encoding")])
        .collect();
    let start_agent = |name: &str, channel: &str, env: &[(&str, &str)]| {
        let dir = sandbox.join(name);
        std::fs::create_dir_all(&dir).expect("agent dir");
        Agent::start_with_env(&dir, &server, &trust, &v1, channel, &[], env)
    };
    let canary = start_agent("canary-agent", "canary", &[]);
    let stable = start_agent("stable-agent", "stable", &runner);
    let prometheus = Prometheus::start(
        &sandbox.join("prometheus"),
        server.url.trim_start_matches("http://"),
        &[&canary.metrics_addr, &stable.metrics_addr],
    );
    for agent in [&canary, &stable] {
        agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
            a.serves_version(V1)
        });
    }

    // A release that dies at once goes to canary (rolled back); one built only for another
    // platform goes to stable (refused: wrong_platform).
    let bad = sandbox.write("bad-release", "#!/bin/sh\nexit 1\n");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (release, _) = trust.sign_release(BAD, "0.0.0", &[(PLATFORM, &bad)]);
    server.publish(&release, &[&bad]);
    let elsewhere = sandbox.write("other-platform-agent", "not for this platform");
    let other = if PLATFORM == "aarch64-unknown-linux-gnu" {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let (release, _) = trust.sign_release(OTHER_PLATFORM, "0.0.0", &[(other, &elsewhere)]);
    server.publish(&release, &[&elsewhere]);
    server.promote("canary", BAD, 100);
    server.promote("stable", OTHER_PLATFORM, 100);
    wait_for_report(
        &server,
        &canary,
        &format!("rolled_back exited_before_ready {V1}->{BAD}"),
    );
    wait_for_report(
        &server,
        &stable,
        &format!("failure wrong_platform {V1}->{OTHER_PLATFORM}"),
    );
    canary.wait_until("v1 serving again", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });

    // The good release: canary first. While canary runs v2 and stable v1, the fleet is skewed.
    let (release, _) = trust.sign_release(V2, "0.0.0", &[(PLATFORM, &v2)]);
    server.publish(&release, &[&v2]);
    server.promote("canary", V2, 100);
    canary.wait_until("v2 serving on canary", Duration::from_secs(90), |a| {
        a.serves_version(V2)
    });
    wait_for_report(&server, &canary, &format!("success {V1}->{V2}"));
    prometheus.wait_until(
        "WorkerVersionSkew pending while canary runs v2 and stable v1",
        Duration::from_secs(30),
        |p| {
            p.alerts()
                .iter()
                .any(|(name, _, state)| name == "WorkerVersionSkew" && state == "pending")
        },
    );
    server.promote("stable", V2, 100);
    stable.wait_until("v2 serving on stable", Duration::from_secs(90), |a| {
        a.serves_version(V2)
    });
    wait_for_report(&server, &stable, &format!("success {V1}->{V2}"));
    for agent in [&canary, &stable] {
        agent.wait_until("success counted", Duration::from_secs(20), |a| {
            metric(&a.metrics(), "worker_update_success_total") == Some(1.0)
        });
    }
    // The Manager dispatches two encoding tasks to the (updated) stable agent, one after the
    // other (an instance runs one at a time); their source is missing, so they fail. Two, as a
    // fleet runs many: the first creates the worker_task_duration_seconds series, which rate()
    // only sees move with the second, once Prometheus scraped it in between.
    manager.wait_until("the runner registered", Duration::from_secs(30), |m| {
        m.runners().len() == 1
    });
    for task_id in ["observability-task-1", "observability-task-2"] {
        let task = runner_api(runner_port).post_json(
            "/task/run",
            &task_body(
                task_id,
                "encoding",
                &manager.media_url("missing.mp4"),
                serde_json::json!({}),
                &manager.completion_url(),
            ),
        );
        assert!(
            task.status < 300,
            "task/run: {} {}",
            task.status,
            task.text()
        );
        let completion = manager.completion_of(task_id, Duration::from_secs(30));
        assert_eq!(completion["status"], "failed", "{completion}");
        prometheus.wait_until(
            "a scrape of the finished task",
            Duration::from_secs(20),
            |p| p.value("sum(worker_task_duration_seconds_count)").is_some(),
        );
    }
    let halt = server.admin().post_json(
        "/api/admin/channels/canary/halt",
        &serde_json::json!({"reason": "observability test"}),
    );
    assert_eq!(halt.status, 200, "halt: {halt:?}");
    let cycle = started.elapsed() - built;

    // A few scrapes of every target after the cycle.
    let cycle_end = prometheus.value("time()").expect("time()");
    prometheus.wait_until(
        "three scrapes of all 3 targets after the cycle",
        Duration::from_secs(20),
        |p| {
            p.value(&format!(
                "count(timestamp(up{{job=~\"update-server|worker-agent\"}} == 1) > {})",
                cycle_end + 3.0
            )) == Some(3.0)
        },
    );
    prometheus.wait_until(
        "WorkerChannelHalted for canary",
        Duration::from_secs(20),
        |p| {
            p.alerts()
                .iter()
                .any(|(name, channel, _)| name == "WorkerChannelHalted" && channel == "canary")
        },
    );

    // Targets and rules are healthy.
    let targets = prometheus.api("targets").expect("targets");
    for target in targets["activeTargets"].as_array().expect("activeTargets") {
        assert_eq!(
            target["health"], "up",
            "{} {}: {}",
            target["labels"]["job"], target["scrapeUrl"], target["lastError"]
        );
    }
    let rules_file = read(RULES);
    let declared: BTreeSet<String> = rule_names(&rules_file, "alert")
        .into_iter()
        .chain(rule_names(&rules_file, "record"))
        .collect();
    let groups = prometheus.api("rules").expect("rules");
    let mut loaded = BTreeSet::new();
    for group in groups["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            assert_eq!(
                rule["health"], "ok",
                "rule {name}: {} (lastError {})",
                rule["health"], rule["lastError"]
            );
            loaded.insert(name);
        }
    }
    assert_eq!(
        loaded, declared,
        "Prometheus loaded other rules than {RULES}"
    );

    // Every dashboard expression returns data (at least one number that is not NaN).
    let dashboard = dashboard();
    let exprs = dashboard_exprs(&dashboard);
    let mut without_data = Vec::new();
    for (title, expr) in &exprs {
        let outcome = substitute_grafana_variables(expr).and_then(|q| prometheus.query(&q));
        match outcome {
            Ok(samples) if samples.iter().any(|(_, v)| v.is_finite()) => {}
            Ok(samples) => without_data.push(format!(
                "{title}: {expr}\n    -> {}",
                if samples.is_empty() {
                    "no series".to_owned()
                } else {
                    format!("only NaN ({} series)", samples.len())
                }
            )),
            Err(error) => without_data.push(format!("{title}: {expr}\n    -> {error}")),
        }
    }
    assert!(
        without_data.is_empty(),
        "{} of {} dashboard expressions returned no data after the update cycle:\n{}",
        without_data.len(),
        exprs.len(),
        without_data.join("\n")
    );
    // Every variable's label_values(SELECTOR, LABEL) query has values too.
    let mut values = BTreeMap::new();
    for (name, selector, label) in variable_queries(&dashboard) {
        let found = prometheus.values_by(&format!("count by ({label}) ({selector})"), &label);
        assert!(!found.is_empty(), "${name}: {selector} has no {label}");
        values.insert(name, found.into_keys().collect::<Vec<_>>());
    }
    assert_eq!(values["channel"], ["canary", "stable"], "{values:?}");
    assert_eq!(values["version"], [V2], "{values:?}");
    assert_eq!(values["instance"].len(), 2, "{values:?}");
    // The halt annotation marks the canary halt (and the promotions theirs).
    let annotation = |name: &str| {
        let (_, expr) = exprs
            .iter()
            .find(|(title, _)| title == &format!("annotation {name}"))
            .unwrap_or_else(|| panic!("no annotation {name}"));
        let query = substitute_grafana_variables(expr).expect("variables");
        prometheus
            .query(&query)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .into_iter()
            .map(|(labels, _)| {
                format!(
                    "{} {}",
                    labels["action"].as_str().unwrap_or_default(),
                    labels["channel"].as_str().unwrap_or_default()
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert!(
        annotation("Halts and resumes").contains("halt canary"),
        "{:?}",
        annotation("Halts and resumes")
    );
    assert!(
        annotation("Promotions and rollbacks").contains("promote stable"),
        "{:?}",
        annotation("Promotions and rollbacks")
    );
    assert_eq!(
        prometheus.values_by(
            "sum by (action) (update_server_channel_changes_total{channel=\"canary\"})",
            "action"
        ),
        BTreeMap::from([("halt".to_owned(), 1.0), ("promote".to_owned(), 2.0)]),
        "canary: promoted twice (the bad release, then v2), halted once"
    );

    // What Prometheus saw is what happened.
    let fleet = prometheus.values_by("sum by (version) (update_server_fleet_workers)", "version");
    assert_eq!(fleet, BTreeMap::from([(V2.to_owned(), 2.0)]), "fleet");
    let halted = prometheus.values_by("max by (channel) (update_server_channel_halted)", "channel");
    assert_eq!(
        halted,
        BTreeMap::from([("canary".to_owned(), 1.0), ("stable".to_owned(), 0.0)])
    );
    let reports = prometheus.values_by(
        "sum by (outcome) (update_server_update_reports_total)",
        "outcome",
    );
    assert_eq!(
        reports,
        BTreeMap::from([
            ("failure".to_owned(), 1.0),
            ("rolled_back".to_owned(), 1.0),
            ("success".to_owned(), 2.0)
        ]),
        "reports by outcome"
    );
    // One build series per process (issue 12): the server's, and each agent's at the version
    // it runs.
    assert_eq!(prometheus.value("sum(update_server_build_info)"), Some(1.0));
    let builds = prometheus.values_by("sum by (version) (worker_agent_build_info)", "version");
    assert!(!builds.is_empty(), "no worker_agent_build_info");
    assert_eq!(
        builds,
        prometheus.values_by("sum by (version) (worker_version_current)", "version"),
        "agent builds"
    );
    assert_eq!(
        prometheus.values_by("sum by (reason) (worker_update_failure_total)", "reason"),
        BTreeMap::from([("wrong_platform".to_owned(), 1.0)])
    );
    assert_eq!(
        prometheus.values_by("sum by (reason) (worker_update_rollback_total)", "reason"),
        BTreeMap::from([("exited_before_ready".to_owned(), 1.0)])
    );
    assert_eq!(
        prometheus.value("sum(worker_update_success_total)"),
        Some(2.0)
    );
    assert_eq!(
        prometheus.values_by(
            "sum by (status) (worker_task_total{task_type=\"encoding\"})",
            "status"
        ),
        BTreeMap::from([
            ("completed".to_owned(), 0.0),
            ("failed".to_owned(), 2.0),
            ("timeout".to_owned(), 0.0)
        ])
    );
    assert_eq!(prometheus.value("sum(worker_runner_registered)"), Some(1.0));
    assert!(
        prometheus
            .value("sum(worker_update_download_bytes_total)")
            .unwrap_or(0.0)
            > 2.0 * 1_000_000.0,
        "both agents downloaded v2"
    );
    let failure_rate = prometheus.values_by(
        "version:update_failures:increase1h / version:update_attempts:increase1h",
        "version",
    );
    assert_eq!(
        failure_rate.get(BAD),
        Some(&1.0),
        "the rolled-back release failed every attempt: {failure_rate:?}"
    );
    // Only the halted channel alerts; the skew resolved when stable caught up.
    let active: BTreeSet<String> = prometheus
        .alerts()
        .into_iter()
        .map(|(name, label, _)| format!("{name}{{{label}}}"))
        .collect();
    assert_eq!(
        active,
        BTreeSet::from(["WorkerChannelHalted{canary}".to_owned()]),
        "alerts pending or firing at the end"
    );

    // Every metric the targets export is documented.
    let names = prometheus.api("label/__name__/values").expect("names");
    let doc = read(METRICS_DOC);
    let undocumented: Vec<&str> = names
        .as_array()
        .expect("names")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .filter(|n| {
            !(n.starts_with("scrape_") || n.starts_with("ALERTS") || n.contains(':') || *n == "up")
        })
        .filter(|n| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            !doc.contains(&format!("`{n}`")) && !doc.contains(&format!("`{base}`"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "{METRICS_DOC} lacks {undocumented:?}"
    );
    println!(
        "observability: {} dashboard expressions with data; update cycle {:.1}s (agents built in {:.1}s)",
        exprs.len(),
        cycle.as_secs_f64(),
        built.as_secs_f64()
    );
}
