//! Probation proves the job, not just a live process (issue 11 item 11): a new version in
//! probation runs its self-check (every runner port answers `/runner/health`, a one-second
//! synthetic ffmpeg encode passes) before it is ready. A version that stays alive but cannot
//! encode is rolled back as `self_check_failed`; a good one passes with the real ffmpeg.

use std::path::PathBuf;
use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::{metric, system_tool};
use e2e::manager::free_port_range;
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// How long a test waits for an agent's report.
const REPORT_WAIT: Duration = Duration::from_secs(90);

/// `BrokenFfmpeg`, a named fake for a party outside our control (the machine's ffmpeg): an
/// executable at `FFMPEG_PATH` that exists and runs, but fails every encode the way a broken
/// ffmpeg install (a missing codec library) does.
fn broken_ffmpeg(w: &World) -> PathBuf {
    let path = w.sandbox.write(
        "broken-ffmpeg/ffmpeg",
        "#!/bin/sh\n# BrokenFfmpeg (e2e fake): exists, runs, cannot encode.\n\
         echo 'ffmpeg (BrokenFfmpeg fake): error while loading shared libraries: libx264.so: cannot open shared object file' >&2\n\
         exit 127\n",
    );
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

#[test]
fn a_release_that_cannot_encode_is_rolled_back_as_self_check_failed() {
    let w = World::builder().with_manager().start();
    let base = free_port_range(1);
    let ffmpeg = broken_ffmpeg(&w);
    let agent = w
        .runner(V1, base)
        .env(&[("FFMPEG_PATH", &ffmpeg.to_string_lossy())])
        .start();
    // v1 is not in probation and runs no task here: it never calls ffmpeg.
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    w.roll_out(V2, &agent_at_version(V2), 100);
    w.wait_for_report(
        &agent,
        &format!("rolled_back self_check_failed {V1}->{V2}"),
        REPORT_WAIT,
    );
    agent.wait_until(
        "v1 serving again from an untouched install path",
        Duration::from_secs(30),
        |a| a.serves_version(V1) && a.installed_is(V1),
    );
    assert_eq!(agent.quarantined(), serde_json::json!([V2]));
    agent.wait_until("rollback counted", Duration::from_secs(30), |a| {
        metric(
            &a.metrics(),
            "worker_update_rollback_total{reason=\"self_check_failed\"}",
        ) == Some(1.0)
    });
    let log = agent.log();
    assert!(log.contains("probation self-check failed"), "{log}");
    assert!(
        log.contains("BrokenFfmpeg fake"),
        "ffmpeg's error is logged: {log}"
    );
    assert_eq!(w.server.reports().matches("rolled_back").count(), 1);
}

#[test]
fn a_good_release_passes_the_self_check_with_the_real_ffmpeg() {
    system_tool("ffmpeg", "ffmpeg");
    let w = World::builder().with_manager().start();
    let base = free_port_range(2);
    // The encode's temporary directory goes here, so the test sees it removed.
    let tmp = w.sandbox.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let agent = w
        .runner(V1, base)
        .env(&[
            (
                "RUNNER_TASK_TYPES",
                "[1x(encoding,studio),1x(transcription)]",
            ),
            ("TMPDIR", &tmp.to_string_lossy()),
        ])
        .start();
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    w.roll_out(V2, &agent_at_version(V2), 100);
    w.wait_for_report(&agent, &format!("success {V1}->{V2}"), REPORT_WAIT);
    let log = agent.log();
    let passed = log
        .lines()
        .find(|l| l.contains("probation self-check passed"))
        .unwrap_or_else(|| panic!("no self-check in the log: {log}"));
    let line: serde_json::Value = serde_json::from_str(passed).expect("a JSON log line");
    let fields = if line["fields"].is_object() {
        &line["fields"]
    } else {
        &line
    };
    assert_eq!(fields["instances"], 2, "{passed}");
    let encode_ms = fields["encode_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("the encode ran: {passed}"));
    eprintln!("measured: probation self-check synthetic encode took {encode_ms} ms");
    assert!(encode_ms < 20_000, "{passed}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the self-check left {left:?} behind");
    assert!(!w.server.reports().contains("rolled_back"));
    assert_eq!(agent.quarantined(), serde_json::json!([]));
}
