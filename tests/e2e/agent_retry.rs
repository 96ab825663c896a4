//! How a real agent retries after a refusal, with the real server and hostile parties in front
//! of it (the named fakes of `mirror.rs`): a compromised server flooding it with new serials
//! gets a capped exponential backoff and one report, not two fsync'd files per answer; a source
//! that served bad bytes once is avoided for a while, not the bytes forever; an answer that
//! failed verification never becomes the cached state (its ETag is not kept).

use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::metric;
use e2e::mirror::{ForgingProxy, LatestAnswer};
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
