//! Fleet safety (issue 13): what a bad release may cost. Auto-halt counts only release defects
//! (`manifests::FailureReason::RELEASE_DEFECTS`): the environment's failures (a mirror serving
//! bad bytes, ...) reported by real agents do not halt a good release, and a release whose new
//! version dies in probation still does.

use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::{Api, PLATFORM};
use e2e::mirror::{Behaviour, HostileMirror};
use e2e::world::World;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
const V3: &str = "3.0.0";

/// How long a test waits for an agent's report.
const REPORT_WAIT: Duration = Duration::from_secs(180);

/// Whether `channel` is halted, as the signed statement a worker is served says.
pub fn halted(w: &World, channel: &str) -> bool {
    let reply = w.server.worker().latest(channel, "0.0.1", "observer");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["channel"]["signed"]["halted"]
        .as_bool()
        .expect("halted flag")
}

/// A server that halts a channel at the first worker whose failure counts: any environment
/// failure counted as a release defect would halt it.
fn strict_world() -> World {
    World::builder()
        .server_args(&["--auto-halt-failures", "1"])
        .start()
}

#[test]
fn environment_failures_do_not_halt_a_good_release_and_a_probation_death_does() {
    let w = strict_world();
    let file = agent_at_version(V2);
    // The release's signed URL is a mirror that corrupts one byte: every agent's first
    // download fails its hash check (`hash_mismatch`, reported), then the same bytes come from
    // the update server's own copy.
    let mirror = HostileMirror::start(Behaviour::Tampered, &file);
    let agents: Vec<_> = (0..2)
        .map(|i| {
            w.agent(V1)
                .dir(&w.sandbox.join(&format!("agent-{i}")))
                .start()
        })
        .collect();
    for agent in &agents {
        agent.wait_until("v1 serving", Duration::from_secs(60), |a| {
            a.serves_version(V1)
        });
    }
    w.roll_out_from(V2, &file, mirror.url());
    for agent in &agents {
        w.wait_for_report(
            agent,
            &format!("failure hash_mismatch {V1}->{V2}"),
            REPORT_WAIT,
        );
        w.wait_for_install(agent, V1, V2);
    }
    assert!(mirror.requests() >= 2, "both agents tried the mirror");
    assert!(
        !halted(&w, "stable"),
        "a mirror's bad bytes halted a good release:\n{}",
        w.server.reports()
    );
    let status = w.server.admin().get("/api/admin/status").json();
    let stable = status["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel"] == "stable")
        .expect("stable")
        .clone();
    assert_eq!(stable["halted"], false, "{status}");

    // A release whose new version exits before it is ready is a release defect: the first
    // such report halts the channel (--auto-halt-failures 1).
    let dying = w
        .sandbox
        .write("dying/worker-agent", b"#!/bin/sh\nexit 1\n");
    std::fs::set_permissions(&dying, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    w.publish(V3, &[(PLATFORM, &dying)]);
    w.server.promote("stable", V3, 100);
    w.wait_for_report(
        &agents[0],
        &format!("rolled_back exited_before_ready {V2}->{V3}"),
        REPORT_WAIT,
    );
    agents[0].wait_until("the channel halted", Duration::from_secs(30), |_| {
        halted(&w, "stable")
    });
    let audit = w.server.admin().get("/api/admin/audit").text();
    assert!(audit.contains("auto_halt"), "{audit}");
    let metrics = Api::new(&w.server.url, None).get("/metrics").text();
    assert!(
        metrics.contains("update_server_channel_halted{channel=\"stable\"} 1"),
        "{metrics}"
    );
}
