//! Configuration the agent cannot run with (issue 11 item 12): refused once, with one line
//! naming the variable and exit 78 (`EX_CONFIG`, in the unit's `RestartPreventExitStatus=`),
//! never a restart loop; and the one syntax of durations and booleans every binary shares.

use std::time::{Duration, Instant};

use e2e::fleet::Agent;
use e2e::manager::free_port_range;
use e2e::world::World;

/// The version every agent here runs.
const VERSION: &str = "1.0.0";

/// Waits (at most 20 s) for the supervisor to exit and returns its exit code.
#[track_caller]
fn exit_code(agent: &mut Agent, what: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = agent.exited() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what}: the agent still runs after 20 s ({} worker starts)\n--- agent log ---\n{}",
        agent.log().matches("worker started").count(),
        agent.log()
    );
}

#[test]
fn a_bad_configuration_exits_78_once_with_one_line_naming_the_variable() {
    let world = World::builder().with_manager().start();
    let cases = [
        // The placeholder the shipped scripts/systemd/worker-agent.env.example holds.
        ("RUNNER_TOKEN", "replace-with-the-manager-runner-token"),
        ("RUNNER_TASK_TYPES", "[2x(encoding,studio]"),
        ("AUTO_UPDATE", "maybe"),
        ("UPDATE_LONG_POLL", "sometimes"),
        ("UPDATE_MAX_DEFERRAL_SECS", "2 hours"),
        ("RUNNER_HEARTBEAT_SECS", "-5"),
        // Issue 14's settings.
        ("SOURCE_ALLOW_PRIVATE_NETWORKS", "perhaps"),
        ("MANAGER_CALLBACK_ORIGINS", "ftp://manager.example.org"),
        ("MAX_TASK_DISK_GB", "0"),
        ("MIN_FREE_DISK_GB", "lots"),
    ];
    for (variable, value) in cases {
        let base = free_port_range(2);
        let mut agent = world
            .runner(VERSION, base)
            .dir(&world.sandbox.join(variable))
            .env(&[(variable, value)])
            .start();
        let what = format!("{variable}={value}");
        assert_eq!(
            exit_code(&mut agent, &what),
            Some(78),
            "{what}: {}",
            agent.log()
        );
        let log = agent.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: one line, not {lines:#?}");
        assert!(
            lines[0].starts_with("worker-agent: configuration error: ")
                && lines[0].contains(variable),
            "{what}: the line names the variable: {}",
            lines[0]
        );
        assert!(
            !log.contains("worker started"),
            "{what}: no worker was started"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", base)).is_err(),
            "{what}: no runner port opened"
        );
        if variable == "RUNNER_TOKEN" {
            assert!(!log.contains(value), "the token is not repeated: {log}");
        }
    }
    assert!(world.manager().runners().is_empty(), "nothing registered");
}

#[test]
fn durations_and_booleans_share_one_syntax_in_every_binary() {
    // Plain seconds for the server (it took only `60s`-style values before), units for the
    // agent's `*_SECS` variables (they took only plain seconds), word booleans.
    let world = World::builder()
        .server_args(&["--poll-interval", "2", "--long-poll-max", "1m"])
        .start();
    let agent = world
        .agent(VERSION)
        .env(&[
            ("UPDATE_MAX_DEFERRAL_SECS", "2h"),
            ("UPDATE_READ_TIMEOUT_SECS", "1m"),
            ("UPDATE_CONNECT_TIMEOUT_SECS", "5s"),
            ("UPDATE_LONG_POLL", "off"),
            ("AUTO_UPDATE", "Yes"),
        ])
        .start();
    agent.wait_until("the agent serves", Duration::from_secs(60), |a| {
        a.serves_version(VERSION)
    });
    assert!(
        agent.log().contains("\"auto_update\":true"),
        "AUTO_UPDATE=Yes is on: {}",
        agent.log()
    );
}

/// Writes `token` to `path` with `mode`.
fn token_file(path: &std::path::Path, token: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(path, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A v1 agent in `dir` with no token on its command line (`--token ""`) and `env`.
fn tokenless_agent(world: &World, dir: &str, env: &[(&str, &str)]) -> Agent {
    Agent::start_at(
        &world.sandbox.join(dir),
        &world.server.url,
        "",
        &world.trust,
        &e2e::agent_at_version(VERSION),
        "stable",
        &[],
        env,
        false,
    )
}

#[test]
fn the_worker_token_comes_from_a_private_file_or_a_systemd_credential() {
    let world = World::new();
    let token = world.server.worker_token.clone();
    // WORKER_TOKEN_FILE, mode 0600: registered and serving; the token is in no command line.
    let file = world.sandbox.join("secrets/worker.token");
    token_file(&file, &token, 0o600);
    let from_file = tokenless_agent(
        &world,
        "from-file",
        &[("WORKER_TOKEN_FILE", &file.to_string_lossy())],
    );
    from_file.wait_until(
        "serving with the file's token",
        Duration::from_secs(60),
        |a| a.serves_version(VERSION),
    );
    let worker_pid = from_file.ready().expect("ready")["pid"].to_string();
    for pid in [from_file.supervisor_pid().to_string(), worker_pid] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&token),
            "the token is on the command line of {pid}"
        );
    }
    // systemd LoadCredential=: $CREDENTIALS_DIRECTORY/worker-token, mode 0400.
    let credentials = world.sandbox.join("credentials");
    token_file(&credentials.join("worker-token"), &token, 0o400);
    let from_credential = tokenless_agent(
        &world,
        "from-credential",
        &[("CREDENTIALS_DIRECTORY", &credentials.to_string_lossy())],
    );
    from_credential.wait_until(
        "serving with the credential",
        Duration::from_secs(60),
        |a| a.serves_version(VERSION),
    );

    // A token file group and others can read: refused like a key file, exit 78, one line.
    let open = world.sandbox.join("secrets/open.token");
    token_file(&open, &token, 0o644);
    let mut refused = tokenless_agent(
        &world,
        "open-file",
        &[("WORKER_TOKEN_FILE", &open.to_string_lossy())],
    );
    assert_eq!(exit_code(&mut refused, "a 0644 token file"), Some(78));
    let log = refused.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, not {lines:#?}");
    assert!(
        lines[0].contains("WORKER_TOKEN_FILE")
            && lines[0].contains("mode 644")
            && lines[0].contains("chmod 600"),
        "{}",
        lines[0]
    );
    assert!(!log.contains(&token), "the token is not printed: {log}");
}
