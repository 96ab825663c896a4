//! The operator documentation against the code: every configuration variable the binaries read
//! (from their real `--help` and from the sources) is on `wiki/operations/environment.md` with
//! the default `--help` prints; every metric the sources register is on the metrics page with
//! its labels; the systemd units pass `systemd-analyze verify`; every alert has a runbook
//! section; the release scripts sign nothing and publish to canary only; every repository path
//! the operator pages name exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::fleet::system_tool;
use e2e::{bin, workspace_root, Sandbox};

const ENVIRONMENT: &str = "wiki/operations/environment.md";
const METRICS: &str = "wiki/analytics/metrics-and-observability.md";
/// The heading of the metrics page's old -> new table (issue 12's renames), kept last on it.
const RENAMED: &str = "\n## Renamed metrics\n";
const RUNBOOK: &str = "wiki/runbooks/worker-update.md";
const RULES: &str = "wiki/alerts/worker-updates.rules.yml";
const WORKFLOW: &str = ".github/workflows/canary-worker-update.yml";
const BUILD_SCRIPT: &str = "scripts/build-worker.sh";

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every `.rs` file under `dir` (recursively), sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Whether `text` looks like an environment variable name (`UPPER_CASE`, 2+ characters).
fn is_env_name(text: &str) -> bool {
    text.len() >= 2
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Environment variables the sources read or set: the string literal right after clap's
/// `env = `, `env::var(`, `var_os(`, `EnvFilter::try_from_env(`, `Command::env(` and
/// `const X_ENV: &str = `. Cargo's own build-script inputs (`CARGO_*`, `TARGET`) are not
/// configuration.
fn env_vars_in_sources() -> BTreeMap<String, String> {
    const BEFORE_NAME: [&str; 6] = [
        "env = ",
        "env::var(",
        "var_os(",
        "try_from_env(",
        ".env(",
        "_ENV: &str = ",
    ];
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in [
        "agent/src",
        "agent/runner/src",
        "update-server/src",
        "release-cli/src",
    ] {
        files.extend(rust_files(&root.join(dir)));
    }
    files.push(root.join("scripts/build_info.rs"));
    let mut found = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            for pattern in BEFORE_NAME {
                for (at, _) in line.match_indices(pattern) {
                    let rest = &line[at + pattern.len()..];
                    let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                    else {
                        continue;
                    };
                    if !is_env_name(name) || name.starts_with("CARGO_") || name == "TARGET" {
                        continue;
                    }
                    let at = format!(
                        "{}:{}",
                        file.strip_prefix(&root).unwrap_or(&file).display(),
                        number + 1
                    );
                    found.entry(name.to_owned()).or_insert(at);
                }
            }
        }
    }
    found
}

/// `--help` of `program args...` and of every subcommand below it.
fn help_texts(program: &Path, args: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    let output = Command::new(program)
        .args(args.iter())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(
        output.status.success(),
        "{} {} --help failed",
        program.display(),
        args.join(" ")
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let subcommands: Vec<String> = text
        .split("\nCommands:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|name| *name != "help")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.push((format!("{name} {}", args.join(" ")), text));
    if args.len() < 3 {
        for sub in subcommands {
            args.push(sub);
            help_texts(program, args, out);
            args.pop();
        }
    }
}

/// `NAME -> default` (empty when none) of every `[env: NAME=] [default: X]` in `help`.
fn env_in_help(help: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for chunk in help.split("[env: ").skip(1) {
        let name: String = chunk
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let after = chunk.split_once(']').map_or("", |(_, rest)| rest);
        let default = after
            .strip_prefix(" [default: ")
            .and_then(|d| d.split_once(']'))
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default();
        found.insert(name, default);
    }
    found
}

#[test]
fn environment_page_lists_every_configuration_variable() {
    let page = read(ENVIRONMENT);
    let rows: Vec<&str> = page.lines().filter(|l| l.starts_with('|')).collect();
    let mut helps = Vec::new();
    for program in ["worker-agent", "update-server", "worker-release"] {
        help_texts(&bin(program), &mut Vec::new(), &mut helps);
    }
    // name -> (where it was found, defaults printed by --help)
    let mut variables: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (command, text) in &helps {
        for (name, default) in env_in_help(text) {
            let entry = variables
                .entry(name)
                .or_insert_with(|| (format!("`{command} --help`"), BTreeSet::new()));
            if !default.is_empty() && default != "\"\"" {
                entry.1.insert(default);
            }
        }
    }
    let from_help = variables.len();
    for (name, at) in env_vars_in_sources() {
        variables.entry(name).or_insert((at, BTreeSet::new()));
    }
    assert!(
        from_help > 50 && variables.len() > from_help,
        "the scan found too little ({from_help} from --help, {} in all): is it broken?",
        variables.len()
    );
    let mut missing = Vec::new();
    let mut wrong_default = Vec::new();
    for (name, (at, defaults)) in &variables {
        let needle = format!("`{name}`");
        let documented: Vec<&&str> = rows.iter().filter(|r| r.contains(&needle)).collect();
        if documented.is_empty() {
            missing.push(format!("{name} (from {at})"));
            continue;
        }
        for default in defaults {
            let shown = format!("`{default}`");
            if !documented.iter().any(|r| r.contains(&shown)) {
                wrong_default.push(format!("{name}: --help says [default: {default}]"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{ENVIRONMENT} lacks {} variable(s) the code reads:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(
        wrong_default.is_empty(),
        "{ENVIRONMENT} gives another default than --help:\n{}",
        wrong_default.join("\n")
    );
    // The systemd example environment files only use documented variables.
    for example in [
        "scripts/systemd/worker-agent.env.example",
        "scripts/systemd/update-server.env.example",
    ] {
        for line in read(example).lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if let Some((name, _)) = line.split_once('=') {
                if is_env_name(name) {
                    assert!(
                        variables.contains_key(name),
                        "{example}: {name} is not a variable of the binaries"
                    );
                }
            }
        }
    }
}

/// Text from `open` (an index just after an opening parenthesis) to its closing parenthesis,
/// string literals skipped.
fn until_close(text: &str, open: usize) -> &str {
    let mut depth = 1;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[open..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + i];
                }
            }
            _ => {}
        }
    }
    &text[open..]
}

/// `name -> labels` of every metric the sources register: the `prometheus` crate's
/// `register_*_with_registry!` macros, the one way the binaries create metrics (a metric made
/// another way still has to be documented: `observability.rs` checks every scraped name).
fn metrics_in_sources() -> BTreeMap<String, Vec<String>> {
    const VECS: [&str; 5] = [
        "register_int_counter_vec_with_registry!(",
        "register_counter_vec_with_registry!(",
        "register_int_gauge_vec_with_registry!(",
        "register_gauge_vec_with_registry!(",
        "register_histogram_vec_with_registry!(",
    ];
    const SINGLES: [&str; 5] = [
        "register_int_counter_with_registry!(",
        "register_counter_with_registry!(",
        "register_int_gauge_with_registry!(",
        "register_gauge_with_registry!(",
        "register_histogram_with_registry!(",
    ];
    let root = workspace_root();
    let mut found = BTreeMap::new();
    for dir in ["agent/src", "agent/runner/src", "update-server/src"] {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (pattern, labelled) in VECS
                .iter()
                .map(|p| (p, true))
                .chain(SINGLES.iter().map(|p| (p, false)))
            {
                for (at, _) in text.match_indices(pattern) {
                    let args = until_close(&text, at + pattern.len());
                    let Some(name) = args.split('"').nth(1) else {
                        continue;
                    };
                    let labels = if labelled {
                        args.rsplit_once("&[")
                            .map(|(_, list)| {
                                list.split('"')
                                    .skip(1)
                                    .step_by(2)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    found.insert(name.to_owned(), labels);
                }
            }
        }
    }
    found
}

#[test]
fn metrics_page_lists_every_metric_and_its_labels() {
    let page = read(METRICS);
    let metrics = metrics_in_sources();
    assert!(
        metrics.len() >= 20 && metrics.contains_key("worker_update_failure_total"),
        "the scan found too little: {metrics:?}"
    );
    let mut problems = Vec::new();
    for (name, labels) in &metrics {
        let prefix = format!("| `{name}` |");
        let Some(row) = page.lines().find(|l| l.starts_with(&prefix)) else {
            problems.push(format!("{name}: no row"));
            continue;
        };
        for label in labels {
            if !row.contains(&format!("`{label}`")) {
                problems.push(format!("{name}: label {label} not described"));
            }
        }
    }
    // And no row describes a metric that no longer exists (recording rules have a ':', alerts
    // are CamelCase), except the old names of the renamed-metrics table: those must be gone
    // from the sources, and every new name there must be registered.
    let (current, renamed) = page
        .split_once(RENAMED)
        .unwrap_or_else(|| panic!("{METRICS}: no {RENAMED:?} section"));
    for row in renamed.lines().filter(|l| l.starts_with("| `")) {
        let mut names = row.split('`').skip(1).step_by(2);
        let old = names.next().unwrap_or_default();
        if metrics.contains_key(old) {
            problems.push(format!(
                "{old}: listed as renamed, but a source still registers it"
            ));
        }
        let new = row.split('|').nth(2).unwrap_or_default();
        for name in new.split('`').skip(1).step_by(2) {
            if !name.contains(':') && !metrics.contains_key(name) {
                problems.push(format!(
                    "{name}: listed as a new name, but no source registers it"
                ));
            }
        }
    }
    for row in current.lines().filter(|l| l.starts_with("| `")) {
        let first = row.split('`').nth(1).unwrap_or_default();
        let is_metric_name = first
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_metric_name && !metrics.contains_key(first) {
            problems.push(format!("{first}: documented, but no source registers it"));
        }
    }
    assert!(
        problems.is_empty(),
        "{METRICS} and the sources disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = system_tool("systemd-analyze", "systemd");
    let sandbox = Sandbox::new();
    for (unit, binary, user, required) in [
        (
            "update-server.service",
            "update-server",
            "update-server",
            &[
                "ExecStart=/usr/local/bin/update-server serve",
                "EnvironmentFile=/etc/update-server/update-server.env",
                "StateDirectory=update-server",
                "RestartPreventExitStatus=78",
            ][..],
        ),
        (
            "worker-agent.service",
            "worker-agent",
            "worker-agent",
            &[
                "ExecStart=/opt/worker-agent/worker-agent run",
                "EnvironmentFile=/etc/worker-agent/agent.env",
                "StateDirectory=worker-agent",
                "ReadWritePaths=/opt/worker-agent",
                "RestartPreventExitStatus=78",
            ][..],
        ),
    ] {
        let text = read(&format!("scripts/systemd/{unit}"));
        let lines: BTreeSet<&str> = text.lines().map(str::trim).collect();
        for directive in required.iter().copied().chain([
            "Restart=always",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "KillMode=mixed",
            "[Install]",
        ]) {
            assert!(lines.contains(directive), "{unit} lacks {directive}");
        }
        assert!(
            lines.contains(format!("User={user}").as_str()),
            "{unit}: User={user}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("RestartSec=")),
            "{unit}: RestartSec"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("TimeoutStopSec=")),
            "{unit}: TimeoutStopSec"
        );
        // The installed paths do not exist here: verify a copy whose ExecStart runs the binary
        // just built (systemd-analyze checks that the command is executable).
        let built = bin(binary);
        let copy: String = text
            .lines()
            .map(|line| match line.strip_prefix("ExecStart=") {
                Some(command) => {
                    let args = command.split_once(' ').map_or("", |(_, a)| a);
                    format!("ExecStart={} {args}\n", built.display())
                }
                None => format!("{line}\n"),
            })
            .collect();
        let path = sandbox.write(unit, copy);
        let output = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .expect("run systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {unit} ({}):\n{stderr}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
    }
}

/// GitHub's anchor of a Markdown heading.
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

#[test]
fn every_alert_has_a_runbook_section() {
    let runbook = read(RUNBOOK);
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let rules = read(RULES);
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url:"))
        .map(|l| l.trim().trim_matches('"'))
        .collect();
    assert_eq!(links.len(), alerts.len(), "every alert has a runbook_url");
    for (alert, link) in alerts.iter().zip(&links) {
        let (page, section) = link.split_once('#').expect("runbook_url has an anchor");
        // Absolute links (issue 16): the repository URL, then the runbook's path.
        assert!(
            page.starts_with("https://") && page.ends_with(&format!("/{RUNBOOK}")),
            "{alert}: runbook_url {link} is not an absolute link to {RUNBOOK}"
        );
        assert!(
            anchors.contains(section),
            "{RUNBOOK} has no section #{section} for {alert}"
        );
        assert_eq!(
            section,
            alert.to_lowercase(),
            "{alert}'s runbook anchor is named after it"
        );
    }
}

#[test]
fn release_scripts_sign_nothing_and_publish_to_canary_only() {
    let syntax = Command::new("bash")
        .args(["-n", BUILD_SCRIPT])
        .current_dir(workspace_root())
        .output()
        .expect("bash -n");
    assert!(
        syntax.status.success(),
        "{BUILD_SCRIPT}: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let script = read(BUILD_SCRIPT);
    for needle in [
        "WORKER_AGENT_VERSION",
        "cargo build --profile dist",
        "strip",
        "sha256sum",
        "worker-release sign-release",
    ] {
        assert!(script.contains(needle), "{BUILD_SCRIPT} lacks {needle}");
    }
    let workflow = read(WORKFLOW);
    for needle in [
        "workflow_dispatch",
        "scripts/build-worker.sh",
        "worker-release publish",
        "worker-release promote --channel canary",
        "secrets.",
        "upload-artifact",
    ] {
        assert!(workflow.contains(needle), "{WORKFLOW} lacks {needle}");
    }
    // Commands only (comments may explain what it never does).
    let commands: String = workflow
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for forbidden in [
        "--channel stable",
        "sign-release",
        "sign-rollback",
        "sign-channel",
        ".key",
    ] {
        assert!(
            !commands.contains(forbidden),
            "{WORKFLOW} must sign nothing and never promote past canary: found {forbidden:?}"
        );
    }
}

#[test]
fn every_repository_path_the_operator_docs_name_exists() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for page in [
        "DEPLOYMENT.md",
        ENVIRONMENT,
        METRICS,
        RUNBOOK,
        "wiki/alerts/worker-updates.rules.yml",
    ] {
        let text = read(page);
        for word in text.split(|c: char| c.is_whitespace() || "`()[]\"',;*".contains(c)) {
            let word = word.trim_end_matches(['.', ':']);
            let word = word.split('#').next().unwrap_or_default();
            let is_repo_path = ["scripts/", "wiki/", ".github/"]
                .iter()
                .any(|p| word.starts_with(p))
                && !word.contains('<')
                && !word.contains('*');
            if is_repo_path && !root.join(word).exists() {
                missing.push(format!("{page}: {word}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "paths named in the docs that do not exist:\n{}",
        missing.join("\n")
    );
}
