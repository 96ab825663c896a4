//! The Grafana dashboard's structure, without Grafana: every panel has a data source, queries and
//! a unit, counts are rates and durations seconds, every server and agent metric is selected by
//! its scrape job, every variable used is defined, every link is absolute and names a file and
//! section of this repository, and promote/halt annotations exist. What the expressions return
//! is `observability.rs`'s real-Prometheus test, which uses the helpers here.

use std::collections::BTreeSet;

use e2e::workspace_root;

pub(crate) const DASHBOARD: &str = "wiki/dashboards/worker-fleet.json";
const RULES: &str = "wiki/alerts/worker-updates.rules.yml";
const RUNBOOK: &str = "wiki/runbooks/worker-update.md";
/// The constant variable every link starts with (absolute links to this repository's wiki).
const REPO_URL_VARIABLE: &str = "${repo_url}";

/// Grafana's variables and what they stand for in the real-Prometheus test (All selected, a
/// wide dashboard range).
const GRAFANA_VARIABLES: [(&str, &str); 9] = [
    ("$__rate_interval", "5m"),
    ("$__range", "1h"),
    ("$__interval", "15s"),
    ("${channel}", ".*"),
    ("$channel", ".*"),
    ("${version}", ".*"),
    ("$version", ".*"),
    ("${instance}", ".*"),
    ("$instance", ".*"),
];

/// Units a per-second rate may have (Grafana unit ids).
const RATE_UNITS: [&str; 6] = ["ops", "reqps", "rps", "wps", "Bps", "binBps"];

pub(crate) fn dashboard() -> serde_json::Value {
    let path = workspace_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every non-row panel, rows' nested panels too.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(panels: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                out.push(panel);
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The annotation queries (Grafana's built-in one has none).
fn annotations(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["expr"].is_string())
        .collect()
}

/// Every `expr` of every panel target and of every annotation, with its panel's (annotation's)
/// title.
pub(crate) fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    for annotation in annotations(dashboard) {
        let name = annotation["name"].as_str().unwrap_or("(unnamed)");
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((format!("annotation {name}"), expr.to_owned()));
        }
    }
    out
}

/// The query variables as (name, selector, label) of their `label_values(SELECTOR, LABEL)`.
pub(crate) fn variable_queries(dashboard: &serde_json::Value) -> Vec<(String, String, String)> {
    variables(dashboard)
        .into_iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let query = v["query"]["query"].as_str().unwrap_or_default();
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("${name}: not a label_values query: {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .unwrap_or_else(|| panic!("${name}: label_values(SELECTOR, LABEL): {query}"));
            (name, selector.trim().to_owned(), label.trim().to_owned())
        })
        .collect()
}

fn variables(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

pub(crate) fn substitute_grafana_variables(expr: &str) -> Result<String, String> {
    let mut query = expr.to_owned();
    for (variable, value) in GRAFANA_VARIABLES {
        query = query.replace(variable, value);
    }
    if query.contains('$') {
        return Err(format!("unknown Grafana variable in {expr:?}"));
    }
    Ok(query)
}

/// The names of the variables `text` uses (`$name` or `${name}`), Grafana's `$__` ones aside.
fn used_variables(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (i, _) in text.match_indices('$') {
        let rest = text[i + 1..].trim_start_matches('{');
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.starts_with("__") {
            used.insert(name);
        }
    }
    used
}

/// Every metric selector of `expr` that lacks its scrape job: `update_server_*` needs
/// `job="update-server"`, `worker_*` `job="worker-agent"` and the `$instance` filter. Recorded
/// series (`a:b:c`) are the rule file's and carry no job.
fn selectors_without_job(expr: &str) -> Vec<String> {
    let bytes = expr.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut missing = Vec::new();
    for prefix in ["update_server_", "worker_"] {
        for (start, _) in expr.match_indices(prefix) {
            if start > 0 && is_name(bytes[start - 1]) {
                continue;
            }
            let end = start + expr[start..].bytes().take_while(|b| is_name(*b)).count();
            let name = &expr[start..end];
            if name.contains(':') {
                continue;
            }
            let selector = expr[end..]
                .strip_prefix('{')
                .and_then(|s| s.split_once('}'))
                .map_or("", |(s, _)| s);
            let needed: &[&str] = if prefix == "worker_" {
                &["job=\"worker-agent\"", "instance=~\"$instance\""]
            } else {
                &["job=\"update-server\""]
            };
            for need in needed {
                if !selector.contains(need) {
                    missing.push(format!("{name} lacks {need}"));
                }
            }
        }
    }
    missing
}

/// The unit a panel whose expressions are `exprs` must show, if any rule says so: durations and
/// timestamps in seconds, rates of counters per second; `increase()` only over the range.
fn unit_problems(exprs: &[&str], unit: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if unit.is_empty() {
        problems.push("no unit".to_owned());
    }
    for expr in exprs {
        if expr.contains("increase(") && !expr.contains("[$__range]") {
            problems.push(format!(
                "increase() over a step: show it as rate() with a unit: {expr}"
            ));
        }
        if expr.contains("histogram_quantile") || expr.contains("_seconds") {
            if unit != "s" {
                problems.push(format!("a duration in {unit:?}, not \"s\": {expr}"));
            }
        } else if expr.contains("rate(") && !expr.contains(" / ") && !RATE_UNITS.contains(&unit) {
            problems.push(format!(
                "a rate in {unit:?}, not one of {RATE_UNITS:?}: {expr}"
            ));
        }
    }
    problems
}

/// `heading` as a Markdown anchor (GitHub's rule, as `docs.rs` reads the runbook).
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// What is wrong with `link` (`${repo_url}/PATH#ANCHOR`), with `${repo_url}` = `repo_url`.
fn link_problems(link: &str, repo_url: &str) -> Option<String> {
    let Some(rest) = link.strip_prefix(REPO_URL_VARIABLE) else {
        return Some(format!("{link}: not under {REPO_URL_VARIABLE}"));
    };
    let absolute = format!("{repo_url}{rest}");
    if !absolute.starts_with("https://") {
        return Some(format!("{link} -> {absolute}: not absolute https"));
    }
    let (path, section) = rest
        .trim_start_matches('/')
        .split_once('#')
        .unwrap_or((rest.trim_start_matches('/'), ""));
    let Ok(text) = std::fs::read_to_string(workspace_root().join(path)) else {
        return Some(format!("{link}: no file {path} in the repository"));
    };
    let found = section.is_empty()
        || text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .any(|h| anchor(h.trim_start_matches('#')) == section);
    (!found).then(|| format!("{link}: {path} has no section #{section}"))
}

#[test]
#[allow(clippy::too_many_lines)] // one check list over the whole dashboard
fn dashboard_is_grafana_json_over_the_fleet_metrics() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "worker-fleet");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let defined: BTreeSet<String> = variables(&dashboard)
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    for name in ["datasource", "channel", "version", "instance", "repo_url"] {
        assert!(defined.contains(name), "no ${name} variable: {defined:?}");
    }
    let repo_url = variables(&dashboard)
        .into_iter()
        .find(|v| v["name"] == "repo_url")
        .and_then(|v| v["query"].as_str())
        .expect("$repo_url is a constant")
        .to_owned();
    assert!(repo_url.starts_with("https://"), "{repo_url}");

    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    let mut links = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if !ids.insert(panel["id"].as_u64().expect("panel id")) {
            problems.push(format!("{}: duplicate id", panel["title"]));
        }
    }
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{title}: no query"));
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource is not ${{datasource}}"));
        }
        if panel["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{title}: no description"));
        }
        let exprs: Vec<&str> = targets.iter().filter_map(|t| t["expr"].as_str()).collect();
        for target in targets {
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "{title}: a target's datasource is not ${{datasource}}"
                ));
            }
        }
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        for problem in unit_problems(&exprs, unit) {
            problems.push(format!("{title}: {problem}"));
        }
        for link in panel["links"].as_array().into_iter().flatten() {
            links.push((title.to_owned(), link["url"].as_str().unwrap_or_default()));
        }
    }
    for link in dashboard["links"].as_array().into_iter().flatten() {
        links.push((
            "dashboard".to_owned(),
            link["url"].as_str().unwrap_or_default(),
        ));
    }
    assert!(
        links.iter().any(|(_, url)| url.contains(RUNBOOK)),
        "no link to {RUNBOOK}"
    );
    for (title, url) in &links {
        used.extend(used_variables(url));
        if let Some(problem) = link_problems(url, &repo_url) {
            problems.push(format!("{title}: link {problem}"));
        }
    }

    // Promote and halt annotations, over the server's channel changes.
    let annotations = annotations(&dashboard);
    for action in ["promote", "halt"] {
        if !annotations.iter().any(|a| {
            a["expr"].as_str().is_some_and(|e| {
                e.contains("update_server_channel_changes_total") && e.contains(action)
            })
        }) {
            problems.push(format!("no annotation of {action}s"));
        }
    }
    for annotation in &annotations {
        if annotation["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("annotation {}: datasource", annotation["name"]));
        }
    }

    let exprs = dashboard_exprs(&dashboard);
    for (title, expr) in &exprs {
        used.extend(used_variables(expr));
        if let Err(error) = substitute_grafana_variables(expr) {
            problems.push(format!("{title}: {error}"));
        }
        for missing in selectors_without_job(expr) {
            problems.push(format!("{title}: {missing}: {expr}"));
        }
    }
    for (name, selector, _) in variable_queries(&dashboard) {
        // A variable's own query needs the job only ($instance is what it lists).
        let missing = selectors_without_job(&selector)
            .into_iter()
            .filter(|m| !m.contains("$instance"));
        for missing in missing {
            problems.push(format!("${name}: {missing}"));
        }
    }
    let undefined: Vec<_> = used.difference(&defined).collect();
    if !undefined.is_empty() {
        problems.push(format!("variables used but not defined: {undefined:?}"));
    }
    let unused: Vec<_> = defined
        .iter()
        .filter(|d| *d != "datasource" && !used.contains(*d))
        .collect();
    if !unused.is_empty() {
        problems.push(format!("variables defined but not used: {unused:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The alert rules' runbook links are as absolute, under the same repository URL.
    let rules = std::fs::read_to_string(workspace_root().join(RULES)).expect("rules");
    let runbook_links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url:"))
        .map(|l| l.trim().trim_matches('"'))
        .collect();
    assert!(!runbook_links.is_empty(), "{RULES} has no runbook_url");
    for link in runbook_links {
        let relative = link
            .strip_prefix(&repo_url)
            .unwrap_or_else(|| panic!("{RULES}: runbook_url {link} is not under {repo_url}"));
        assert!(
            relative.starts_with(&format!("/{RUNBOOK}#")),
            "{RULES}: runbook_url {link}"
        );
        if let Some(problem) = link_problems(&format!("{REPO_URL_VARIABLE}{relative}"), &repo_url) {
            panic!("{RULES}: runbook_url {problem}");
        }
    }

    // What the issue asks the dashboard to show, by the metric that carries it.
    let all: String = exprs.iter().map(|(_, e)| e.as_str()).collect();
    for metric in [
        "update_server_fleet_workers",        // versions across the fleet, skew
        "update_server_fleet_workers_stale",  // agents not checking in
        "update_server_update_reports_total", // attempts, successes, failures by reason
        "worker_update_attempt_total",        // the agents' own counts
        "worker_update_success_total",        //
        "worker_update_failure_total",        //
        "worker_update_rollback_total",       // rollbacks
        "update_server_channel_rollout_ratio", // rollout share per channel
        "update_server_channel_release_info", // the version each channel offers
        "update_server_channel_halted",       // halted state per channel
        "update_server_rollout_wave",         // the wave of each channel's rollout plan
        "update_server_rollout_next_step_timestamp_seconds", // when the next wave opens
        "update_server_channel_statement_expiry_timestamp_seconds", // statement expiry
        "update_server_channel_changes_total", // promote/halt annotations
        "update_server_http_requests_total",  // agents polling, server errors
        "update_server_http_request_duration_seconds", // server latency
        "worker_update_last_check_timestamp_seconds", // agents polling (their side)
        "worker_update_download_bytes_total", // download throughput
        "worker_tasks_running",               // tasks running
        "worker_task_total",                  // tasks failed
        "worker_task_duration_seconds",
        "worker_runner_registered",
    ] {
        assert!(all.contains(metric), "no dashboard query uses {metric}");
    }
}

#[test]
fn the_structure_checks_catch_what_they_look_for() {
    // The checks above pass on the dashboard; here each one fails on what it exists to catch.
    assert_eq!(
        selectors_without_job("sum(update_server_fleet_workers{channel=~\"$channel\"})"),
        ["update_server_fleet_workers lacks job=\"update-server\""]
    );
    assert_eq!(
        selectors_without_job("rate(worker_task_total{job=\"worker-agent\"}[5m])"),
        ["worker_task_total lacks instance=~\"$instance\""]
    );
    assert!(selectors_without_job("version:update_failures:increase1h").is_empty());
    assert!(!unit_problems(
        &["sum(increase(worker_task_total[$__rate_interval]))"],
        "ops"
    )
    .is_empty());
    assert!(!unit_problems(&["sum(rate(worker_task_total[5m]))"], "short").is_empty());
    assert!(!unit_problems(&["histogram_quantile(0.9, x)"], "ms").is_empty());
    assert!(!unit_problems(&["sum(x)"], "").is_empty());
    assert!(unit_problems(
        &["sum(rate(a_total[5m])) / sum(rate(b_total[5m]))"],
        "percentunit"
    )
    .is_empty());
    assert_eq!(
        used_variables("a{b=~\"$version\",c=~\"${instance}\"}[$__rate_interval]"),
        BTreeSet::from(["instance".to_owned(), "version".to_owned()])
    );
    let base = "https://git.example.org/x";
    assert!(link_problems("wiki/runbooks/worker-update.md", base).is_some());
    assert!(link_problems(
        "${repo_url}/wiki/runbooks/worker-update.md#nosuchsection",
        base
    )
    .is_some());
    assert!(link_problems(
        "${repo_url}/wiki/runbooks/worker-update.md#workerchannelhalted",
        "wiki"
    )
    .is_some());
    assert!(link_problems(
        "${repo_url}/wiki/runbooks/worker-update.md#workerchannelhalted",
        base
    )
    .is_none());
}
