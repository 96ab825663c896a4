//! A compromised update server with the real server and a real agent.
//!
//! The real server verifies what it stores and what it loads, so forged documents reach an agent
//! only through a compromised server: a [`ForgingProxy`] (a named fake) in front of the real
//! server substitutes `/latest` and passes registration, reports, roots and artifacts through.
//! Each test checks that a real agent refuses with the exact reason: counted in
//! `worker_update_failure_total{reason}`, reported to the server (`failure <reason>
//! <from>-><to>` in the audit), nothing installed, the old version still serving. The last test
//! checks the server side: a forgery written into its database is neither served nor re-signed.
//! An oversized answer (a genuine `/latest` behind 256 MiB of whitespace) is refused as
//! `too_large` without being read whole, and the agent updates once the server behaves again.
//! A forged (unsigned) registration handshake claiming the agent is below the channel's minimum
//! neither stops it nor its tasks, and it still updates. A serial as high as JSON carries, signed
//! by a channel key that a new root then rotates out, does not freeze the agent: after the
//! rotation the old key's statement is refused and the new key's low serial is installed.

use std::path::Path;
use std::time::Duration;

use e2e::agent_at_version;
use e2e::fleet::{metric, Agent, PLATFORM};
use e2e::mirror::{ForgingProxy, LatestAnswer};
use e2e::world::World;
use manifests::{ChannelStatement, Release, Signed, Timestamp};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// What these tests do with the [`World`]: read and forge the server's documents, and watch a
/// real agent refuse them.
trait Forgeries {
    /// Publishes the real v2 agent for this platform and promotes it on stable at `percent`.
    fn roll_out_v2(&self, percent: u8) -> Signed<Release>;
    /// A connection to the running server's database.
    fn db(&self) -> rusqlite::Connection;
    /// The statement the server stores as stable's current one.
    fn stored_statement(&self) -> Signed<ChannelStatement>;
    /// The statement of `serial` from the server's history.
    fn historic_statement(&self, serial: i64) -> Vec<u8>;
    /// Makes agents talk to a compromised server: a [`ForgingProxy`] that serves the real
    /// server's `/latest` with `statement` (and `release`) substituted and passes everything
    /// else through. (The real server verifies what it stores, so it cannot be made to serve
    /// these; see `a_forgery_written_into_the_server_database_is_neither_served_nor_re_signed`.)
    fn serve_forged(&self, statement: &[u8], release: Option<&Signed<Release>>) -> ForgingProxy;
    /// A v1 agent in `dir`, talking to `proxy` when given, else to the server.
    fn v1_agent_in(&self, dir: &Path, proxy: Option<&ForgingProxy>) -> Agent;
    /// Checks the agent refused with exactly `reason` (metric and report) and still runs
    /// `from`, installed and serving.
    fn assert_refused(&self, agent: &Agent, binary: &Path, reason: &str, from: &str, to: &str);
    /// Starts a v1 agent (after the forgery is served) and checks it refuses with `reason`.
    fn v1_refuses(&self, proxy: Option<&ForgingProxy>, reason: &str);
}

impl Forgeries for World {
    fn roll_out_v2(&self, percent: u8) -> Signed<Release> {
        self.roll_out(V2, &agent_at_version(V2), percent)
    }

    fn db(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(self.server.data_dir.join("update-server.sqlite3"))
            .expect("open the server's database");
        db.busy_timeout(Duration::from_secs(30))
            .expect("busy timeout");
        db
    }

    fn stored_statement(&self) -> Signed<ChannelStatement> {
        let body: Vec<u8> = self
            .db()
            .query_row(
                "SELECT statement FROM channels WHERE channel = 'stable'",
                [],
                |row| row.get(0),
            )
            .expect("stable's statement");
        Signed::from_slice(&body).expect("stored statement parses")
    }

    fn historic_statement(&self, serial: i64) -> Vec<u8> {
        self.db()
            .query_row(
                "SELECT body FROM statements WHERE channel = 'stable' AND serial = ?1",
                [serial],
                |row| row.get(0),
            )
            .expect("historic statement")
    }

    fn serve_forged(&self, statement: &[u8], release: Option<&Signed<Release>>) -> ForgingProxy {
        let mut latest = self
            .server
            .worker()
            .latest("stable", V1, "forgery-base")
            .json();
        latest["channel"] = serde_json::from_slice(statement).expect("statement JSON");
        if let Some(release) = release {
            latest["release"] = serde_json::to_value(release).expect("release JSON");
        }
        let body = serde_json::to_vec(&latest).expect("JSON");
        ForgingProxy::start(&self.server.url, body)
    }

    fn v1_agent_in(&self, dir: &Path, proxy: Option<&ForgingProxy>) -> Agent {
        let agent = self.agent(V1).dir(dir);
        match proxy {
            Some(proxy) => agent.via(proxy.url()),
            None => agent,
        }
        .start()
    }

    #[track_caller]
    fn assert_refused(&self, agent: &Agent, binary: &Path, reason: &str, from: &str, to: &str) {
        self.wait_for_report(
            agent,
            &format!("failure {reason} {from}->{to} "),
            Duration::from_secs(90),
        );
        let counter = format!("worker_update_failure_total{{reason=\"{reason}\"}}");
        agent.wait_until(&format!("{counter} == 1"), Duration::from_secs(30), |a| {
            metric(&a.metrics(), &counter) == Some(1.0)
        });
        agent.wait_until(&format!("{from} serving"), Duration::from_secs(30), |a| {
            a.serves_version(from)
        });
        // Give a wrongly accepting agent time to act on the forgery, then look again.
        std::thread::sleep(Duration::from_secs(2));
        assert!(agent.serves_version(from), "{}", agent.log());
        let metrics = agent.metrics();
        let failures: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("worker_update_failure_total{"))
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        assert_eq!(failures, [format!("{counter} 1")], "{metrics}");
        assert_eq!(
            metric(&metrics, "worker_update_attempt_total"),
            Some(0.0),
            "nothing downloaded: {metrics}"
        );
        let reports = self.server.reports();
        assert_eq!(
            reports.lines().collect::<Vec<_>>().len(),
            1,
            "one report, the refusal: {reports}"
        );
        assert!(
            agent
                .installed_version()
                .starts_with(&format!("worker-agent {from} ")),
            "install path untouched: {}",
            agent.installed_version()
        );
        assert_eq!(
            manifests::hash_file(&agent.install_path).expect("hash").0,
            manifests::hash_file(binary).expect("hash").0,
            "install path untouched"
        );
        let leftovers: Vec<_> = std::fs::read_dir(agent.install_path.parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "worker-agent")
            .collect();
        assert!(
            leftovers.is_empty(),
            "files beside the install: {leftovers:?}"
        );
    }

    fn v1_refuses(&self, proxy: Option<&ForgingProxy>, reason: &str) {
        let agent = self.v1_agent_in(self.sandbox.path(), proxy);
        self.assert_refused(&agent, &agent_at_version(V1), reason, V1, V2);
    }
}

#[test]
fn a_statement_altered_after_signing_is_refused_as_bad_signature() {
    let w = World::new();
    w.roll_out_v2(100);
    let mut statement = w.stored_statement();
    statement.signed.rollout.salt.push_str("-forged");
    let proxy = w.serve_forged(&statement.to_json_pretty().expect("json"), None);
    w.v1_refuses(Some(&proxy), "bad_signature");
}

#[test]
fn a_statement_without_signatures_is_refused_as_unsigned() {
    let w = World::new();
    w.roll_out_v2(100);
    let mut statement = w.stored_statement();
    statement.signatures.clear();
    let proxy = w.serve_forged(&statement.to_json_pretty().expect("json"), None);
    w.v1_refuses(Some(&proxy), "unsigned");
}

#[test]
fn a_statement_signed_by_the_release_key_is_refused_as_threshold() {
    let w = World::new();
    w.roll_out_v2(100);
    let statement = w.stored_statement();
    let forged = Signed::sign(statement.signed, &[&w.trust.release_key]).expect("sign");
    let proxy = w.serve_forged(&forged.to_json_pretty().expect("json"), None);
    w.v1_refuses(Some(&proxy), "threshold");
}

#[test]
fn an_expired_statement_signed_by_the_channel_key_is_refused_as_expired() {
    let w = World::new();
    w.roll_out_v2(100);
    let mut statement = w.stored_statement().signed;
    statement.issued_at = Timestamp::now().plus_secs(-7200);
    statement.expires = Timestamp::now().plus_secs(-3600);
    let forged = Signed::sign(statement, &[&w.trust.channel_key]).expect("sign");
    let proxy = w.serve_forged(&forged.to_json_pretty().expect("json"), None);
    w.v1_refuses(Some(&proxy), "expired");
}

#[test]
fn an_older_serial_served_again_is_refused_as_replayed() {
    let w = World::new();
    // Serial 1 offers v2 to everyone; serial 2 takes it back to 0 %.
    w.roll_out_v2(100);
    w.server.promote("stable", V2, 0);
    let v1 = agent_at_version(V1);
    let agent_dir = w.sandbox.path().join("agent");
    let agent = w.v1_agent_in(&agent_dir, None);
    agent.wait_until("serial 2 accepted", Duration::from_secs(60), |a| {
        let status = std::process::Command::new(&a.install_path)
            .args(["update", "status", "--update-server", &w.server.url])
            .args(["--token", &w.server.worker_token])
            .arg("--root")
            .arg(&w.trust.root_path)
            .arg("--state-dir")
            .arg(&a.state_dir)
            .output()
            .expect("update status");
        serde_json::from_slice::<serde_json::Value>(&status.stdout)
            .is_ok_and(|s| s["accepted_serial"] == 2)
    });
    agent.wait_until("v1 serving", Duration::from_secs(30), |a| {
        a.serves_version(V1)
    });
    // The agent has to follow the server to its new address: stop it, restart it later with
    // the same install and state directory.
    drop(agent);

    let serial_1 = w.historic_statement(1);
    let proxy = w.serve_forged(&serial_1, None);
    let agent = w.v1_agent_in(&agent_dir, Some(&proxy));
    w.assert_refused(&agent, &v1, "replayed_serial", V1, V2);
}

#[test]
fn a_downgrade_without_a_rollback_directive_is_refused() {
    let w = World::new();
    let v1 = agent_at_version(V1);
    w.publish(V1, &[(PLATFORM, &v1)]);
    w.server.promote("stable", V1, 100);
    let v2 = agent_at_version(V2);
    let agent = w.agent(V2).start();
    w.assert_refused(&agent, &v2, "downgrade", V2, V1);
}

#[test]
fn a_release_only_for_another_platform_is_refused_as_wrong_platform() {
    let w = World::new();
    let other = if PLATFORM == "aarch64-unknown-linux-gnu" {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let v2 = agent_at_version(V2);
    w.publish(V2, &[(other, &v2)]);
    w.server.promote("stable", V2, 100);
    w.v1_refuses(None, "wrong_platform");
}

#[test]
fn a_release_altered_after_signing_is_refused_as_bad_signature() {
    let w = World::new();
    let release = w.roll_out_v2(100);
    // The release now points at another binary (v1's bytes) under the release key's old
    // signature; the statement is re-signed with the real channel key so that it binds the
    // forged manifest: only the release signature is wrong.
    let mut forged = release;
    let (sha256, size) = manifests::hash_file(&agent_at_version(V1)).expect("hash");
    let artifact = &mut forged.signed.artifacts[0];
    artifact.url = format!("/api/worker-updates/artifacts/{sha256}");
    artifact.sha256 = sha256;
    artifact.size = size;
    forged.signed.notes = "forged".to_owned();
    let mut statement = w.stored_statement().signed;
    statement.release.manifest_sha256 = forged.signed_sha256().expect("sha");
    let statement = Signed::sign(statement, &[&w.trust.channel_key]).expect("sign");
    let proxy = w.serve_forged(&statement.to_json_pretty().expect("json"), Some(&forged));
    w.v1_refuses(Some(&proxy), "bad_signature");
}

#[test]
fn a_forged_handshake_claiming_below_minimum_neither_stops_the_agent_nor_its_tasks() {
    let w = World::new();
    // A man in the middle rewrites the (unsigned) registration answer; `/latest` is genuine.
    let proxy = ForgingProxy::answering(&w.server.url, LatestAnswer::Genuine);
    let forged = serde_json::json!({
        "minimum_version": "99.0.0", "recommended_version": "99.0.0", "poll_interval_s": 5,
        "below_minimum": true, "root_version": 1,
    });
    proxy.answer_register(Some(serde_json::to_vec(&forged).expect("JSON")));
    let mut agent = w.v1_agent_in(w.sandbox.path(), Some(&proxy));
    agent.wait_until("v1 serving", Duration::from_secs(60), |a| {
        a.serves_version(V1)
    });
    assert!(proxy.forged_registrations() >= 1, "the forgery was read");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.exited(), None, "still running: {}", agent.log());
    let health = agent.health().expect("healthz");
    assert_eq!(health["draining"], false, "takes tasks: {health}");
    // It still updates itself, and the new version reads the same forgery without stopping.
    w.roll_out_v2(100);
    w.wait_for_install(&agent, V1, V2);
    assert!(proxy.forged_registrations() >= 2, "v2 read the forgery too");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(agent.exited(), None, "still running: {}", agent.log());
    assert!(agent.serves_version(V2), "{}", agent.log());
    assert!(
        !agent.log().contains("below_minimum_refused"),
        "{}",
        agent.log()
    );
}

/// The highest serial a JSON number carries exactly (2^53 - 1): what a channel-key holder signs
/// to freeze every agent that accepts it.
const FREEZING_SERIAL: u64 = (1 << 53) - 1;

/// The channel serial the agent has accepted (its `trust.json`).
fn accepted_serial(agent: &Agent) -> Option<u64> {
    let trust = std::fs::read(agent.state_dir.join("trust.json")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&trust).ok()?["accepted_serial"].as_u64()
}

#[test]
fn a_new_channel_key_resets_the_serial_a_rotated_out_key_froze() {
    let mut w = World::new();
    w.roll_out_v2(0);
    // The holder of the (soon rotated out) channel key signs the highest serial.
    let mut frozen = w.stored_statement().signed;
    frozen.serial = FREEZING_SERIAL;
    let frozen = Signed::sign(frozen, &[&w.trust.channel_key]).expect("sign");
    let frozen = frozen.to_json_pretty().expect("json");
    let proxy = w.serve_forged(&frozen, None);
    // A short backoff: after the refused replay below, the next poll must come within the wait.
    let agent = w
        .agent(V1)
        .dir(&w.sandbox.join("agent"))
        .via(proxy.url())
        .env(&[("UPDATE_RETRY_BACKOFF_SECS", "1")])
        .start();
    agent.wait_until(
        "the freezing serial accepted",
        Duration::from_secs(60),
        |a| accepted_serial(a) == Some(FREEZING_SERIAL),
    );

    // DEPLOYMENT.md's channel-key rotation: root 2 whose channel role holds a new key, then the
    // server restarted with that root and key (same address: the proxy keeps forwarding to it).
    w.sandbox
        .release_cli(&["keygen", "--out", "keys", "--name", "channel-2"])
        .success();
    w.sandbox
        .release_cli(&[
            "rotate-root",
            "--root",
            "root.json",
            "--channel-key",
            "keys/channel-2.pub",
            "--remove-key",
            "keys/channel.pub",
            "--allow-weaker",
            "--key",
            "keys/root.key",
            "--out",
            "root-2.json",
        ])
        .success();
    let (root_2, key_2) = (
        w.sandbox.join("root-2.json"),
        w.sandbox.join("keys/channel-2.key"),
    );
    w.server.restart_with(&[
        ("--allow-weaker", ""),
        ("--root", &root_2.to_string_lossy()),
        ("--channel-key", &key_2.to_string_lossy()),
    ]);
    w.server.promote("stable", V2, 100);
    let genuine = w.server.worker().latest("stable", V1, "replay-base").json();
    assert_eq!(genuine["root_version"], 2, "{genuine}");
    let serial = genuine["channel"]["signed"]["serial"]
        .as_u64()
        .expect("serial");
    assert!(serial < 100, "a low serial under the new key: {serial}");

    // A replay of the old key's freezing statement (with root 2 on offer) is refused...
    let mut replay = genuine.clone();
    replay["channel"] = serde_json::from_slice(&frozen).expect("statement JSON");
    proxy.answer_latest(LatestAnswer::Forged(
        serde_json::to_vec(&replay).expect("JSON"),
    ));
    w.wait_for_report(
        &agent,
        &format!("failure threshold {V1}->{V2} "),
        Duration::from_secs(90),
    );
    assert!(agent.serves_version(V1), "{}", agent.log());
    // ...and the legitimate low serial under the new key is accepted and installed.
    proxy.answer_latest(LatestAnswer::Genuine);
    w.wait_for_install(&agent, V1, V2);
    assert_eq!(accepted_serial(&agent), Some(serial), "{}", agent.log());
    let reports = w.server.reports();
    assert!(!reports.contains("replayed_serial"), "{reports}");
}

/// Padding in front of the genuine `/latest` answer: far over the agent's 1 MiB cap, and more
/// than [`WORKER_PEAK_RSS_LIMIT`], so an agent that reads it whole cannot stay under that limit.
const OVERSIZED_PADDING: u64 = 256 * 1024 * 1024;

/// The worker's peak resident memory (`VmHWM`) it must stay under while refusing oversized
/// answers.
const WORKER_PEAK_RSS_LIMIT: u64 = 200 * 1024 * 1024;

/// `VmHWM` (peak resident set) of process `pid`, in bytes.
fn peak_rss(pid: u64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

#[test]
fn an_oversized_latest_answer_is_refused_as_too_large_and_the_agent_updates_afterwards() {
    let w = World::new();
    w.roll_out_v2(100);
    let proxy = ForgingProxy::answering(&w.server.url, LatestAnswer::Padded(OVERSIZED_PADDING));
    // A short backoff after each refusal (1 s doubling), so several are seen.
    let agent = w
        .agent(V1)
        .via(proxy.url())
        .env(&[("UPDATE_RETRY_BACKOFF_SECS", "1")])
        .start();
    let counter = "worker_update_failure_total{reason=\"too_large\"}";
    agent.wait_until(&format!("{counter} >= 1"), Duration::from_secs(90), |a| {
        metric(&a.metrics(), counter) >= Some(1.0)
    });
    // Several oversized answers, each refused and counted (each retry is visible), after a
    // backoff each.
    agent.wait_until("3 oversized answers", Duration::from_secs(60), |_| {
        proxy.padded_answers() >= 3
    });
    let worker = agent
        .ready()
        .and_then(|r| r["pid"].as_u64())
        .expect("worker pid");
    assert!(agent.serves_version(V1), "{}", agent.log());
    agent.wait_until(&format!("{counter} >= 3"), Duration::from_secs(30), |a| {
        metric(&a.metrics(), counter) >= Some(3.0)
    });
    let metrics = agent.metrics();
    assert_eq!(
        metric(&metrics, "worker_update_attempt_total"),
        Some(0.0),
        "nothing downloaded: {metrics}"
    );
    let peak = peak_rss(worker);
    assert!(
        peak < WORKER_PEAK_RSS_LIMIT,
        "worker {worker} peaked at {} MiB reading oversized answers",
        peak / (1024 * 1024)
    );
    assert_eq!(
        manifests::hash_file(&agent.install_path).expect("hash").0,
        manifests::hash_file(&agent_at_version(V1)).expect("hash").0,
        "install path untouched"
    );
    assert!(agent.log().contains("too_large"), "{}", agent.log());

    // The server behaves again: the same agent takes the update.
    proxy.answer_latest(LatestAnswer::Genuine);
    w.wait_for_install(&agent, V1, V2);
    assert!(
        agent
            .installed_version()
            .starts_with(&format!("worker-agent {V2} ")),
        "{}",
        agent.installed_version()
    );
}

#[test]
fn a_forgery_written_into_the_server_database_is_neither_served_nor_re_signed() {
    let mut w = World::new();
    w.roll_out_v2(0);
    // Whoever can write the database widens the rollout without the channel key...
    let mut statement = w.stored_statement();
    statement.signed.rollout.percent = 100;
    statement.signed.expires = Timestamp::now().plus_secs(60);
    let changed = w
        .db()
        .execute(
            "UPDATE channels SET statement = ?1 WHERE channel = 'stable'",
            [statement.to_json_pretty().expect("json")],
        )
        .expect("forge");
    assert_eq!(changed, 1);
    w.server.crash_and_restart();
    // ...and the server refuses it: not served, not re-signed with the real key.
    let latest = w.server.worker().latest("stable", V1, "w").json();
    assert!(
        latest["channel"].is_null(),
        "forged statement served: {latest}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let latest = w.server.worker().latest("stable", V1, "w").json();
    assert!(
        latest["channel"].is_null(),
        "forged statement re-signed: {latest}"
    );
    assert!(
        w.server.log().contains("bad_signature") || w.server.log().contains("does not verify"),
        "{}",
        w.server.log()
    );
    // A release altered in the database is not served either.
    let mut tampered: Signed<Release> = Signed::from_slice(
        &w.db()
            .query_row(
                "SELECT body FROM releases WHERE version = ?1",
                [V2],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .expect("release"),
    )
    .expect("parse");
    tampered.signed.notes = "forged".to_owned();
    w.db()
        .execute(
            "UPDATE releases SET body = ?1 WHERE version = ?2",
            rusqlite::params![tampered.to_json_pretty().expect("json"), V2],
        )
        .expect("forge release");
    w.server.crash_and_restart();
    let releases = w.server.admin().get("/api/admin/releases").json();
    assert_eq!(releases["releases"], serde_json::json!([]), "{releases}");
}
