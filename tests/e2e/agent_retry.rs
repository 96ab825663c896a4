//! How a real agent retries after a refusal, with the real server and hostile parties in front
//! of it (the named fakes of `mirror.rs`): a compromised server flooding it with new serials
//! gets a capped exponential backoff and one report, not two fsync'd files per answer; a source
//! that served bad bytes once is avoided for a while, not the bytes forever; an answer that
//! failed verification never becomes the cached state (its ETag is not kept).

use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::metric;
use e2e::mirror::{Behaviour, ForgingProxy, HostileMirror, LatestAnswer};
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// The fixed window the flood is measured over (the reproduction: 538 files in 14 s).
const FLOOD_WINDOW: Duration = Duration::from_secs(14);

/// Failure reports in the server's audit.
fn failure_reports(w: &World) -> usize {
    w.server
        .reports()
        .lines()
        .filter(|l| l.contains("failure "))
        .count()
}

#[test]
fn a_server_answering_every_poll_with_a_new_serial_gets_backoff_and_one_report() {
    let w = World::new();
    w.roll_out(V2, &agent_at_version(V2), 100);
    let proxy = ForgingProxy::answering(&w.server.url, LatestAnswer::NewSerials);
    // The default backoff (1 minute doubling to 1 hour).
    let agent = w.agent(V1).via(proxy.url()).start();
    w.wait_for_report(
        &agent,
        &format!("failure bad_signature {V1}->{V2} "),
        Duration::from_secs(90),
    );
    let (requests, reports) = (proxy.latest_requests(), failure_reports(&w));
    let started = Instant::now();
    std::thread::sleep(FLOOD_WINDOW);
    let requests = proxy.latest_requests() - requests;
    // Each report is one outcome file and its `.counted` mark, both fsync'd.
    let reports_in_window = failure_reports(&w) - reports;
    eprintln!(
        "flood over {:?}: {requests} /latest requests, {reports_in_window} reports ({} outbox files)",
        started.elapsed(),
        2 * reports_in_window
    );
    assert!(
        requests <= 2,
        "{requests} /latest requests in {FLOOD_WINDOW:?}: no backoff\n{}",
        agent.log()
    );
    assert_eq!(
        failure_reports(&w),
        1,
        "one report per release and reason: {}",
        w.server.reports()
    );
    let metrics = agent.metrics();
    let counted = metric(
        &metrics,
        "worker_update_failure_total{reason=\"bad_signature\"}",
    );
    assert!(
        counted.is_some_and(|n| (1.0..=3.0).contains(&n)),
        "each refusal counted: {metrics}"
    );
    assert!(agent.serves_version(V1), "{}", agent.log());
    assert!(
        agent.log().contains("next_retry_in_secs"),
        "the log says when it tries again: {}",
        agent.log()
    );
}

/// A short backoff (1 s doubling), so the tests see retries.
const SHORT_BACKOFF: (&str, &str) = ("UPDATE_RETRY_BACKOFF_SECS", "1");

/// Short long polls, so each retry comes soon after its backoff.
const SHORT_POLLS: [&str; 2] = ["--poll-interval-secs", "2"];

/// A v1 agent talking to `proxy`, with short long polls and a short backoff.
fn retrying_v1_via(w: &World, proxy: &ForgingProxy) -> e2e::fleet::Agent {
    w.agent(V1)
        .via(proxy.url())
        .flags(&SHORT_POLLS)
        .env(&[SHORT_BACKOFF])
        .start()
}

/// Waits for the report of the refusal (`reason`) of v2, then for v2's install.
#[track_caller]
fn refused_then_installed(w: &World, agent: &e2e::fleet::Agent, reason: &str) {
    w.wait_for_report(
        agent,
        &format!("failure {reason} {V1}->{V2} "),
        Duration::from_secs(90),
    );
    w.wait_for_install(agent, V1, V2);
}

#[test]
fn a_mirror_that_corrupted_one_download_does_not_keep_the_agent_off_the_release() {
    let w = World::new();
    let file = agent_at_version(V2);
    let mirror = HostileMirror::start(Behaviour::TamperedFirst(1), &file);
    w.roll_out_from(V2, &file, mirror.url());
    let agent = w.agent(V1).env(&[SHORT_BACKOFF]).start();
    refused_then_installed(&w, &agent, "hash_mismatch");
    // The mirror is avoided for a while; the same bytes came from the update server's copy.
    assert!(
        !mirror.saw_authorization(),
        "the worker token went to the mirror"
    );
    let log = agent.log();
    assert!(
        log.lines().any(|l| l.contains("artifact source condemned")
            && l.contains(mirror.url())
            && l.contains("next_retry_at")),
        "the log names the source and the next retry: {log}"
    );
}

#[test]
fn bad_bytes_from_the_only_source_are_fetched_again_from_it_after_the_backoff() {
    let w = World::new();
    w.roll_out(V2, &agent_at_version(V2), 100);
    // The server's own artifact URL is the only source; the path to it corrupts one download.
    let proxy = ForgingProxy::answering(&w.server.url, LatestAnswer::Genuine);
    proxy.corrupt_next_artifacts(1);
    let started = Instant::now();
    let agent = retrying_v1_via(&w, &proxy);
    refused_then_installed(&w, &agent, "hash_mismatch");
    eprintln!(
        "installed after one corrupted download in {:?}",
        started.elapsed()
    );
    let reports = w.server.reports();
    assert_eq!(
        reports.matches("failure hash_mismatch").count(),
        1,
        "one report per release and reason: {reports}"
    );
}

#[test]
fn a_refused_latest_answer_is_not_cached_and_the_genuine_statement_is_installed() {
    let w = World::new();
    // A genuinely signed release the statement will not pin: the mix-and-match material.
    let other = w.publish_written("1.5.0", "other-artifact", vec![0x5a_u8; 4096]);
    w.publish(V2, &[(e2e::fleet::PLATFORM, &agent_at_version(V2))]);
    let proxy = ForgingProxy::answering(&w.server.url, LatestAnswer::Genuine);
    let agent = retrying_v1_via(&w, &proxy);
    // Long polling with the server's ETag.
    agent.wait_until("a few polls", Duration::from_secs(60), |_| {
        proxy.latest_requests() >= 3
    });
    proxy.answer_latest(LatestAnswer::SwapReleaseOnce(
        serde_json::to_vec(&other).expect("release JSON"),
    ));
    w.server.promote("stable", V2, 100);
    agent.wait_until("one tampered answer", Duration::from_secs(60), |_| {
        proxy.altered_answers() == 1
    });
    w.wait_for_report(&agent, "failure ", Duration::from_secs(60));
    // The proxy passes everything through again; no new promote.
    w.wait_for_install(&agent, V1, V2);
    assert_eq!(proxy.altered_answers(), 1);
}
