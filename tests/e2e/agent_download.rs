//! `worker-agent` downloads that go wrong, with real processes: the real update server, agent
//! binaries built from this source at two versions, a hostile mirror serving the artifact (bad
//! bytes, wrong sizes, too slowly, errors, silence), and a full or read-only install directory.
//! Every case must end with a `failure <reason>` report, the reason counted on `/metrics`, v1
//! still serving and the install path untouched; except that after a verdict on a mirror's
//! bytes (tampered, too long) the same bytes come from the update server's own copy. One more case checks that a good mirror, whose
//! URL starts with the update server's address, installs v2 without ever seeing the worker token.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::fleet::{metric, Agent};
use e2e::mirror::{Behaviour, HostileMirror};
use e2e::world::World;
use e2e::{agent_at_version, Sandbox};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// No second attempt while a test looks: the first check happens at start, the next one only
/// after a random pause of up to a day (full jitter), and no long poll wakes it earlier.
const ONE_CHECK: [&str; 4] = ["--long-poll", "false", "--poll-interval-secs", "86400"];

/// A v1 agent in the world's sandbox with `flags`.
fn v1_agent(w: &World, flags: &[&str]) -> Agent {
    w.agent(V1).flags(flags).start()
}

/// Publishes and promotes (100 %, stable) the real v2 agent, served by the server.
fn roll_out_v2(w: &World) {
    w.roll_out(V2, &agent_at_version(V2), 100);
}

/// Waits for the `failure <reason> 1.0.0->2.0.0` report and its count on `/metrics`, then
/// checks that nothing changed: v1 serves, the install path holds v1, nothing is staged.
#[track_caller]
fn assert_failed_safely(w: &World, agent: &Agent, reason: &str) {
    w.wait_for_report(
        agent,
        &format!("failure {reason} {V1}->{V2} in "),
        Duration::from_secs(180),
    );
    let reports = w.server.reports();
    assert!(
        !reports.contains("success"),
        "no update may succeed: {reports}"
    );
    let counter = format!("worker_update_failure_total{{reason=\"{reason}\"}}");
    agent.wait_until(
        &format!("{counter} counted"),
        Duration::from_secs(30),
        |a| metric(&a.metrics(), &counter).is_some_and(|n| n >= 1.0),
    );
    agent.wait_until("v1 still serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let installed = agent.installed_version();
    assert!(
        installed.starts_with(&format!("worker-agent {V1} ")),
        "install path untouched: {installed}"
    );
    let staged = leftovers(agent, ".staged");
    assert!(staged.is_empty(), "staged files left: {staged:?}");
}

/// Names of the files in the install directory ending with `suffix`.
fn leftovers(agent: &Agent, suffix: &str) -> Vec<String> {
    std::fs::read_dir(agent.install_path.parent().expect("install dir"))
        .expect("list the install dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// v2 is signed with its artifact at a mirror behaving as `behaviour` (and published and
/// promoted before the agent starts, so its first check tries it). Checks the failure report
/// with `reason`, that the mirror saw at least `requests` requests and never the worker token,
/// and whether a partial download is kept (`part_kept`).
fn mirror_fails(
    behaviour: Behaviour,
    reason: &str,
    extra: &[&str],
    requests: usize,
    part_kept: bool,
) {
    let w = World::new();
    let file = agent_at_version(V2);
    let mirror = HostileMirror::start(behaviour, &file);
    w.roll_out_from(V2, &file, mirror.url());
    let mut flags = ONE_CHECK.to_vec();
    flags.extend_from_slice(extra);
    let agent = v1_agent(&w, &flags);

    assert_failed_safely(&w, &agent, reason);
    assert!(
        mirror.requests() >= requests,
        "{behaviour:?}: {} requests, expected {requests}",
        mirror.requests()
    );
    assert!(
        !mirror.saw_authorization(),
        "the worker token went to the mirror"
    );
    let parts = leftovers(&agent, ".part");
    if part_kept {
        assert_eq!(
            parts.len(),
            1,
            "{behaviour:?}: one partial file kept: {parts:?}"
        );
    } else {
        assert!(
            parts.is_empty(),
            "{behaviour:?}: partial files left: {parts:?}"
        );
    }
}

/// v2 is signed with its artifact at a mirror sending bad bytes (`behaviour`): a verdict on
/// the mirror, reported as `reason` and counted; the mirror is avoided for a while (not the
/// bytes forever), and the same bytes come at once from the update server's own copy. The agent
/// runs with `flags`.
fn mirror_condemned(
    behaviour: Behaviour,
    reason: &str,
    flags: &[&str],
) -> (World, Agent, HostileMirror) {
    let w = World::new();
    let file = agent_at_version(V2);
    let mirror = HostileMirror::start(behaviour, &file);
    w.roll_out_from(V2, &file, mirror.url());
    let agent = v1_agent(&w, flags);
    w.wait_for_report(
        &agent,
        &format!("failure {reason} {V1}->{V2} in "),
        Duration::from_secs(180),
    );
    let counter = format!("worker_update_failure_total{{reason=\"{reason}\"}}");
    agent.wait_until(
        &format!("{counter} counted"),
        Duration::from_secs(30),
        |a| metric(&a.metrics(), &counter).is_some_and(|n| n >= 1.0),
    );
    w.wait_for_install(&agent, V1, V2);
    assert_eq!(
        mirror.requests(),
        1,
        "{behaviour:?}: the mirror is not asked again at once"
    );
    assert!(
        !mirror.saw_authorization(),
        "the worker token went to the mirror"
    );
    (w, agent, mirror)
}

#[test]
fn a_tampered_artifact_is_refused_as_hash_mismatch() {
    // A verdict on the bytes: the partial file is deleted, never resumed.
    mirror_condemned(Behaviour::Tampered, "hash_mismatch", &ONE_CHECK);
}

#[test]
fn a_truncated_artifact_is_refused_as_size_mismatch() {
    // A stream that ends early is treated as network trouble (retryable): both attempts are
    // made, and the partial file (the correct first size-100 bytes) is kept to be resumed with
    // `Range` at the next check. The mirror ignores `Range`, so the second attempt starts over.
    mirror_fails(
        Behaviour::Truncated,
        "size_mismatch",
        &["--download-attempts", "2"],
        2,
        true,
    );
}

#[test]
fn an_endless_artifact_is_cut_at_the_signed_size() {
    // One byte past the signed size is a verdict: the partial file is deleted.
    mirror_condemned(Behaviour::Oversized, "size_mismatch", &ONE_CHECK);
}

#[test]
fn a_dripping_mirror_is_abandoned_as_too_slow() {
    // Too slow is network trouble (retryable): the few bytes received are kept for a resume.
    mirror_fails(
        Behaviour::Drip,
        "too_slow",
        &["--min-rate-bytes", "100000", "--download-attempts", "1"],
        1,
        true,
    );
}

#[test]
fn a_failing_mirror_is_retried_then_reported_as_server() {
    // The status is checked before any file is created: nothing to keep.
    mirror_fails(
        Behaviour::Error500,
        "server",
        &["--download-attempts", "2"],
        2,
        false,
    );
}

#[test]
fn a_silent_mirror_times_out() {
    // No answer at all: no file was ever created.
    mirror_fails(
        Behaviour::Silent,
        "timeout",
        &["--read-timeout-secs", "2", "--download-attempts", "1"],
        1,
        false,
    );
}

/// A port `P` for the update server (free now) and a loopback listener on a port `10 P + d`, so
/// that the mirror's `http://127.0.0.1:Pd` starts with the server's `http://127.0.0.1:P` but is
/// another origin. `P` stays below 6554 (the ten ports must exist), far below the ephemeral range
/// the other tests' `127.0.0.1:0` binds are given, so nobody takes it before the server binds it.
fn ports_sharing_a_prefix() -> (u16, TcpListener) {
    let first = 1024 + u16::try_from(std::process::id() % 5000).unwrap_or(0);
    for server_port in (first..=6553).chain(1024..first) {
        if TcpListener::bind(("127.0.0.1", server_port)).is_err() {
            continue;
        }
        let longer = (0..10).filter_map(|d| u16::try_from(u32::from(server_port) * 10 + d).ok());
        for mirror_port in longer {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", mirror_port)) {
                return (server_port, listener);
            }
        }
    }
    panic!("no free pair of loopback ports P and 10 P + d");
}

#[test]
fn a_mirror_whose_url_starts_with_the_servers_never_gets_the_worker_token() {
    let (server_port, listener) = ports_sharing_a_prefix();
    let w = World::builder()
        .server_args(&["--listen", &format!("127.0.0.1:{server_port}")])
        .start();
    let file = agent_at_version(V2);
    let mirror = HostileMirror::start_on(listener, Behaviour::Faithful, &file);
    assert!(
        mirror.url().starts_with(&w.server.url),
        "the construction: {} must start with {}",
        mirror.url(),
        w.server.url
    );
    w.roll_out_from(V2, &file, mirror.url());
    let agent = v1_agent(&w, &ONE_CHECK);

    agent.wait_until("v2 serving", Duration::from_secs(120), |a| {
        a.serves_version(V2)
    });
    w.wait_for_report(
        &agent,
        &format!("success {V1}->{V2}"),
        Duration::from_secs(60),
    );
    assert!(mirror.requests() >= 1, "v2 came from the mirror");
    assert!(
        !mirror.saw_authorization(),
        "the worker token went to {}, another origin than the update server {}",
        mirror.url(),
        w.server.url
    );
    let installed = agent.installed_version();
    assert!(
        installed.starts_with(&format!("worker-agent {V2} ")),
        "v2 installed: {installed}"
    );
}

/// A mount made by a test, lazily unmounted when dropped.
struct MountGuard {
    path: PathBuf,
}

impl MountGuard {
    /// Runs `mount args...`; the test fails loudly (no skipping) when mounting is not permitted.
    fn mount(path: &Path, steps: &[&[&str]]) -> Self {
        let guard = MountGuard {
            path: path.to_owned(),
        };
        for args in steps {
            let output = Command::new("mount")
                .args(*args)
                .arg(path)
                .output()
                .expect("run mount");
            assert!(
                output.status.success(),
                "mount {args:?} {} failed (these tests need root and permission to mount): {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        guard
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_read_only_install_directory_is_reported_as_read_only() {
    let w = World::new();
    let agent = v1_agent(&w, &[]);
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    let install_dir = agent.install_path.parent().expect("install dir").to_owned();
    let source = install_dir.to_string_lossy().into_owned();
    let _read_only = MountGuard::mount(
        &install_dir,
        &[&["--bind", &source], &["-o", "remount,ro,bind", &source]],
    );
    assert!(
        std::fs::write(install_dir.join("probe"), b"x").is_err(),
        "the install directory is read-only"
    );
    roll_out_v2(&w);
    assert_failed_safely(&w, &agent, "read_only");
    assert!(leftovers(&agent, ".part").is_empty());
}

#[test]
fn a_full_install_directory_is_reported_as_no_space() {
    let w = World::new();
    let v1 = std::fs::metadata(agent_at_version(V1)).expect("v1").len();
    let v2 = std::fs::metadata(agent_at_version(V2)).expect("v2").len();
    // Room for the copy of v1 plus 64 KiB, in whole pages: v2 cannot fit.
    let size_kib = (v1 + 64 * 1024).div_ceil(4096) * 4;
    assert!(v2 > 64 * 1024 + 4096, "v2 ({v2} bytes) must not fit");
    let install_dir = w.sandbox.join("install");
    std::fs::create_dir_all(&install_dir).expect("install dir");
    let options = format!("size={size_kib}k");
    let _tmpfs = MountGuard::mount(&install_dir, &[&["-t", "tmpfs", "-o", &options, "tmpfs"]]);
    roll_out_v2(&w);
    let mut flags = ONE_CHECK.to_vec();
    flags.extend_from_slice(&["--download-attempts", "1"]);
    let agent = v1_agent(&w, &flags);
    assert_failed_safely(&w, &agent, "no_space");
    // A full disk is a verdict, not network trouble: the partial file is deleted.
    assert!(leftovers(&agent, ".part").is_empty());
}

/// The fake itself does what it claims (so the tests above are not vacuous), and stops at once
/// when dropped, even with connections still open.
#[test]
fn the_hostile_mirror_misbehaves_as_documented() {
    use std::io::Read;

    let sandbox = Sandbox::new();
    let artifact: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let file = sandbox.write("artifact", &artifact);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let get = |mirror: &HostileMirror| client.get(mirror.url()).send().expect("an answer");

    let faithful = HostileMirror::start(Behaviour::Faithful, &file);
    assert_eq!(get(&faithful).bytes().expect("body")[..], artifact[..]);
    assert!(!faithful.saw_authorization());
    let with_token = client.get(faithful.url()).bearer_auth("secret").send();
    assert!(with_token.expect("an answer").status().is_success());
    assert!(faithful.saw_authorization(), "a token is noticed");

    let tampered = HostileMirror::start(Behaviour::Tampered, &file);
    let body = get(&tampered).bytes().expect("body");
    assert_eq!(body.len(), artifact.len());
    let differing = body.iter().zip(&artifact).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1, "exactly one byte differs");
    assert_eq!(tampered.requests(), 1);

    let truncated = HostileMirror::start(Behaviour::Truncated, &file);
    let reply = get(&truncated);
    assert_eq!(reply.content_length(), Some(artifact.len() as u64 - 100));
    assert_eq!(
        reply.bytes().expect("body")[..],
        artifact[..artifact.len() - 100]
    );

    let oversized = HostileMirror::start(Behaviour::Oversized, &file);
    let reply = get(&oversized);
    assert_eq!(reply.content_length(), None);
    let mut body = Vec::new();
    reply
        .take(artifact.len() as u64 + 4096)
        .read_to_end(&mut body)
        .expect("body");
    assert_eq!(
        body.len(),
        artifact.len() + 4096,
        "it goes on past the size"
    );
    assert_eq!(body[..artifact.len()], artifact[..]);

    let error = HostileMirror::start(Behaviour::Error500, &file);
    assert_eq!(get(&error).status().as_u16(), 500);
    assert_eq!(get(&error).status().as_u16(), 500);
    assert_eq!(error.requests(), 2);

    let drip = HostileMirror::start(Behaviour::Drip, &file);
    let started = std::time::Instant::now();
    let mut reply = get(&drip);
    assert_eq!(reply.content_length(), Some(artifact.len() as u64));
    let mut three = [0u8; 3];
    reply.read_exact(&mut three).expect("three bytes");
    assert_eq!(three[..], artifact[..3]);
    assert!(started.elapsed() >= Duration::from_millis(350), "it drips");

    let silent = HostileMirror::start(Behaviour::Silent, &file);
    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let error = quick.get(silent.url()).send().expect_err("no answer");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(silent.requests(), 1);

    // Dropped with a dripping response still being read and a silent connection still open.
    let _hold = hold_open(silent.url());
    let started = std::time::Instant::now();
    drop(silent);
    drop(drip);
    drop(oversized);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the mirrors stop promptly: {:?}",
        started.elapsed()
    );
    drop(reply);
}

/// An open connection that sent a request and waits.
fn hold_open(url: &str) -> std::net::TcpStream {
    use std::io::Write;
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: mirror\r\n\r\n")
        .expect("request");
    // Give the mirror time to read it.
    std::thread::sleep(Duration::from_millis(300));
    stream
}

#[test]
fn an_artifact_that_failed_verification_is_not_downloaded_again_at_every_poll() {
    // Polls every second; the mirror is avoided for a minute at first (the default backoff),
    // and the update server's copy is installed meanwhile.
    let (w, agent, mirror) = mirror_condemned(
        Behaviour::Tampered,
        "hash_mismatch",
        &["--long-poll", "false", "--poll-interval-secs", "1"],
    );
    // Many polls later: still one download from the mirror and one report.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(mirror.requests(), 1, "the condemned mirror was asked again");
    assert_eq!(
        w.server.reports().matches("failure hash_mismatch").count(),
        1,
        "{}",
        w.server.reports()
    );
    assert_eq!(
        metric(
            &agent.metrics(),
            "worker_update_failure_total{reason=\"hash_mismatch\"}"
        ),
        Some(1.0)
    );
}
