//! Operator commands and logs tell the truth (issue 11 item 13): `update status` reads the
//! local state only (no server flags, nothing created or written, the channel the agent
//! follows), `update check` changes nothing on disk, and logs carry no Rust debug forms, one
//! `message` key per JSON line, and plain text on a terminal.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::Agent;
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
/// A channel other than the default (`stable`), so a status that prints a default is caught.
const CHANNEL: &str = "canary";

/// Rust debug forms that must never reach an operator.
const DEBUG_FORMS: &[&str] = &["Some(", "None", "Ok(", "Err(", "ExitStatus(", "\\\""];

/// Every file under `dir` with its bytes (and the lock file's too), to compare before/after.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read state dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string();
                files.insert(name, std::fs::read(&path).expect("read state file"));
            }
        }
    }
    files
}

/// `worker-agent ARGS` with none of the agent's variables in the environment.
fn agent_command(args: &[&str]) -> Output {
    Command::new(agent_at_version(V1))
        .args(args)
        .env_remove("UPDATE_SERVER_URL")
        .env_remove("WORKER_TOKEN")
        .env_remove("TRUSTED_ROOT")
        .env_remove("STATE_DIR")
        .output()
        .expect("run worker-agent")
}

/// A v1 agent on the canary channel that accepted a statement, stopped again; and its log.
fn stopped_canary_agent(w: &World) -> (std::path::PathBuf, String) {
    w.publish_written(V2, "v2.bin", b"v2 artifact, never installed here");
    w.server.promote(CHANNEL, V2, 0);
    let dir = w.sandbox.join("agent");
    let mut agent = Agent::start_at(
        &dir,
        &w.server.url,
        &w.server.worker_token,
        &w.trust,
        &agent_at_version(V1),
        CHANNEL,
        &[],
        &[],
        false,
    );
    agent.wait_until("serving, serial accepted", Duration::from_secs(60), |a| {
        a.serves_version(V1)
            && std::fs::read_to_string(a.state_dir.join("trust.json")).is_ok_and(|t| {
                t.contains("\"accepted_serial\": 1") || t.contains("\"accepted_serial\":1")
            })
    });
    // The worker killed under the supervisor: it logs how the worker ended, and restarts it.
    let worker_pid = agent.ready().expect("ready")["pid"].to_string();
    let _ = Command::new("kill").args(["-9", &worker_pid]).status();
    agent.wait_until("worker restarted", Duration::from_secs(30), |a| {
        a.log().contains("worker exited; restarting it") && a.serves_version(V1)
    });
    let state = agent.state_dir.clone();
    let log = agent.log();
    assert!(agent.exited().is_none(), "still running");
    drop(agent);
    (state, log)
}

#[test]
fn update_status_and_check_read_and_change_nothing_and_logs_carry_no_debug_forms() {
    let w = World::new();
    let (state, log) = stopped_canary_agent(&w);

    // Logs: JSON lines, one `message` key each, no debug forms.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(value.is_object(), "{line}");
        assert_eq!(
            line.matches("\"message\":").count(),
            1,
            "one message key: {line}"
        );
        for form in DEBUG_FORMS {
            assert!(!line.contains(form), "debug form {form} in: {line}");
        }
    }
    assert!(log.contains("\"status\":\"signal: 9 (SIGKILL)\""), "{log}");

    // `update status`: only the state directory, no server flags; the agent's own channel.
    let before = snapshot(&state);
    let state_arg = state.to_string_lossy().into_owned();
    let status = agent_command(&["update", "status", "--state-dir", &state_arg]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(value["channel"], CHANNEL, "{stdout}");
    assert_eq!(value["accepted_serial"], 1, "{stdout}");
    assert!(
        value["worker_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{stdout}"
    );
    // The flags the other update commands take are still accepted (and change nothing).
    let legacy = agent_command(&[
        "update",
        "status",
        "--update-server",
        &w.server.url,
        "--token",
        &w.server.worker_token,
        "--root",
        &w.trust.root_path.to_string_lossy(),
        "--channel",
        "stable",
        "--state-dir",
        &state_arg,
    ]);
    assert!(legacy.status.success(), "{legacy:?}");
    let legacy: serde_json::Value = serde_json::from_slice(&legacy.stdout).expect("JSON");
    assert_eq!(
        legacy["channel"], CHANNEL,
        "the agent's channel, not the flag's"
    );
    assert_eq!(
        snapshot(&state),
        before,
        "update status wrote to the state directory"
    );

    // A missing state directory is an error, never created.
    let missing = w.sandbox.join("no-such-state");
    let missing_arg = missing.to_string_lossy().into_owned();
    let refused = agent_command(&["update", "status", "--state-dir", &missing_arg]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&missing_arg),
        "names the directory: {stderr}"
    );
    assert!(!missing.exists(), "update status created {missing_arg}");

    // `update check` after a new statement (serial 2 offers v2 to everyone): it says so, and
    // the state directory is byte for byte what it was.
    w.server.promote(CHANNEL, V2, 100);
    let root_arg = w.trust.root_path.to_string_lossy().into_owned();
    let check_args = |state_dir: &str| {
        agent_command(&[
            "update",
            "check",
            "--update-server",
            &w.server.url,
            "--token",
            &w.server.worker_token,
            "--root",
            &root_arg,
            "--channel",
            CHANNEL,
            "--state-dir",
            state_dir,
        ])
    };
    let check = check_args(&state_arg);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout.contains("serial 2 offers 2.0.0 at 100%"), "{stdout}");
    for form in DEBUG_FORMS {
        assert!(!stdout.contains(form), "debug form {form} in: {stdout}");
    }
    assert_eq!(
        snapshot(&state),
        before,
        "update check wrote to the state directory"
    );
    let fresh = check_args(&missing_arg);
    assert!(fresh.status.success(), "{fresh:?}");
    assert!(!missing.exists(), "update check created {missing_arg}");
}

#[test]
fn logs_on_a_terminal_are_plain_text() {
    let w = World::new();
    let dir = w.sandbox.join("tty");
    std::fs::create_dir_all(&dir).expect("dir");
    let install = dir.join("worker-agent");
    std::fs::copy(agent_at_version(V1), &install).expect("install");
    let metrics = format!("127.0.0.1:{}", e2e::fleet::free_port());
    // `script` gives the agent a pseudo-terminal as stdin/stdout/stderr; `timeout` stops it
    // (SIGTERM) after a few seconds.
    let command = format!(
        "timeout 5 {} run --update-server {} --token {} --root {} --state-dir {} --metrics-listen {metrics}",
        install.display(),
        w.server.url,
        w.server.worker_token,
        w.trust.root_path.display(),
        dir.join("state").display(),
    );
    let output = Command::new(e2e::fleet::system_tool("script", "bsdutils"))
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains("supervisor starting")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.contains("worker ready")), "{text}");
    for line in &lines {
        assert!(
            !line.trim_start().starts_with('{'),
            "a JSON line on a terminal: {line}"
        );
    }
}
