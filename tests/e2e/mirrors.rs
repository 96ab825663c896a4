//! Artifacts on any mirror and an agent on several update servers (issue 15), with real
//! processes: the real update server (two of them where replicas are the point), agent binaries
//! built from this source at two versions, releases signed and published with the real
//! `worker-release`, and the named fake mirrors of `mirror.rs` (outside our control: they may
//! serve anything, and one of them does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::fleet::{metric, Api, Server, PLATFORM};
use e2e::mirror::{Behaviour, HostileMirror};
use e2e::world::World;
use e2e::{agent_at_version, Sandbox};
use manifests::{Release, Signed};

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// The route of the update server's own artifact copies, as its metrics name it.
const ARTIFACT_ROUTE: &str = "/api/worker-updates/artifacts/{sha256}";

/// Signs `version` with the real `worker-release sign-release` for this platform's `file`,
/// with one `--mirror` per entry of `mirrors`; returns the release file.
fn sign_with_mirrors(w: &World, version: &str, file: &Path, mirrors: &[&str]) -> PathBuf {
    let out = w.sandbox.join(&format!("release-{version}-mirrors.json"));
    let artifact = format!("{PLATFORM}={}", file.display());
    let key = w.trust.release_key_path.to_string_lossy().into_owned();
    let root = w.trust.root_path.to_string_lossy().into_owned();
    let out_arg = out.to_string_lossy().into_owned();
    let mut args = vec![
        "sign-release",
        "--version",
        version,
        "--artifact",
        &artifact,
        "--key",
        &key,
        "--root",
        &root,
        "--out",
        &out_arg,
    ];
    for mirror in mirrors {
        args.extend(["--mirror", mirror]);
    }
    w.sandbox.release_cli(&args).success();
    out
}

/// Publishes `release` and uploads `artifacts` to `server` with the real `worker-release
/// publish` and the server's admin token.
fn publish_with_cli(sandbox: &Sandbox, server: &Server, release: &Path, artifacts: &[&Path]) {
    let token = sandbox.write_secret(
        &format!(
            "admin-{}.token",
            server.url.rsplit(':').next().unwrap_or("x")
        ),
        format!("{}\n", server.admin_token),
    );
    let token = token.to_string_lossy().into_owned();
    let release = release.to_string_lossy().into_owned();
    let files: Vec<String> = artifacts
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut args = vec![
        "publish",
        "--server",
        &server.url,
        "--token-file",
        &token,
        &release,
    ];
    for file in &files {
        args.extend(["--artifact", file]);
    }
    sandbox.release_cli(&args).success();
}

/// How many times `server` served `route` with `status`, from its own `/metrics`.
fn served(server: &Server, route: &str, status: &str) -> f64 {
    let metrics = server.admin().get("/metrics").text();
    metric(
        &metrics,
        &format!("update_server_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
    )
    .unwrap_or(0.0)
}

/// A loopback URL nothing listens on (a mirror that is down).
fn down_mirror_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}/mirror")
}

#[test]
fn an_artifact_is_installed_from_the_first_good_mirror_after_a_down_and_a_bad_one() {
    let w = World::new();
    let file = agent_at_version(V2);
    let down = down_mirror_url();
    let bad = HostileMirror::start(Behaviour::Tampered, &file);
    let good = HostileMirror::start(Behaviour::Faithful, &file);
    let release = sign_with_mirrors(&w, V2, &file, &[&down, bad.base_url(), good.base_url()]);
    // The mirrors are signed into the artifact, in the order given, by hash.
    let doc = Signed::<Release>::load(&release).expect("signed release");
    let sha = doc.signed.artifacts[0].sha256.clone();
    assert_eq!(
        doc.signed.artifacts[0].mirrors,
        [
            format!("{down}/{sha}"),
            format!("{}/{sha}", bad.base_url()),
            format!("{}/{sha}", good.base_url()),
        ]
    );
    let inspect = w
        .sandbox
        .release_cli(&["inspect", &release.to_string_lossy()])
        .success();
    assert!(
        inspect.contains(&format!("mirror         {down}/{sha}")),
        "{inspect}"
    );
    publish_with_cli(&w.sandbox, &w.server, &release, &[&file]);
    w.server.promote("stable", V2, 100);

    let agent = w.agent(V1).start();
    w.wait_for_install(&agent, V1, V2);

    // Each mirror was tried in order: the down one skipped with its reason, the bad one's bytes
    // refused by hash, the good one's installed; none of them saw the worker token.
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("artifact mirror unreachable") && l.contains(&down)),
        "the down mirror is skipped with its reason: {log}"
    );
    assert!(
        log.lines().any(|l| l.contains("artifact source condemned")
            && l.contains(bad.base_url())
            && l.contains("hash_mismatch")),
        "the bad mirror is condemned for its bytes: {log}"
    );
    assert_eq!(bad.requests(), 1, "the bad mirror is asked once");
    assert_eq!(
        good.requested_paths(),
        [format!("/mirror/{sha}")],
        "the good mirror served the artifact by its hash"
    );
    assert!(!bad.saw_authorization() && !good.saw_authorization());
    let reports = w.server.reports();
    for needle in [
        format!("failure download {V1}->{V2}"),
        format!("failure hash_mismatch {V1}->{V2}"),
        format!("success {V1}->{V2}"),
    ] {
        assert!(reports.contains(&needle), "{needle:?} in {reports}");
    }
    // Every byte came from a mirror: the server's own copy was never downloaded.
    assert_eq!(served(&w.server, ARTIFACT_ROUTE, "200"), 0.0);
}

#[test]
fn an_agent_on_two_update_servers_carries_on_through_the_other_when_one_is_killed() {
    let mut w = World::new();
    // Replica B: the same trust (root, channel key) and worker token, its own data directory.
    let b_dir = w.sandbox.join("replica-b");
    std::fs::create_dir_all(&b_dir).expect("replica dir");
    let tokens = w.sandbox.join("worker.tokens");
    let mut b = Server::start(
        &b_dir,
        &w.trust,
        &["--worker-token-file", &tokens.to_string_lossy()],
    );
    b.worker_token.clone_from(&w.server.worker_token);
    // The same signed documents on both, published with the real CLI.
    let (v1, v2) = (agent_at_version(V1), agent_at_version(V2));
    let r1 = sign_with_mirrors(&w, V1, &v1, &[]);
    let r2 = sign_with_mirrors(&w, V2, &v2, &[]);
    for server in [&w.server, &b] {
        publish_with_cli(&w.sandbox, server, &r1, &[&v1]);
        publish_with_cli(&w.sandbox, server, &r2, &[&v2]);
        server.promote("stable", V1, 100);
    }
    let a_url = w.server.url.clone();
    let agent = w
        .agent(V1)
        .via(&format!("{a_url},{}", b.url))
        .flags(&["--poll-interval-secs", "5"])
        .start();
    // It uses A (the first) and polls it, holding A's statement (serial 1).
    agent.wait_until("polls on A", Duration::from_secs(60), |_| {
        served(&w.server, "/api/worker-updates/latest", "200") >= 1.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        served(&b, "/api/worker-updates/latest", "200"),
        0.0,
        "B unused so far"
    );
    // B moves on to v2 (serial 2); then A dies mid-poll.
    b.promote("stable", V2, 100);
    w.server.stop();

    let success = format!("success {V1}->{V2}");
    agent.wait_until("the success report on B", Duration::from_secs(120), |_| {
        b.reports().contains(&success)
    });
    agent.wait_until("v2 serving", Duration::from_secs(30), |a| {
        a.serves_version(V2)
    });
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("update server unreachable") && l.contains(&a_url)),
        "the agent says A is unreachable: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("update server failover") && l.contains(&b.url)),
        "the agent says it moved to B: {log}"
    );
    assert!(served(&b, ARTIFACT_ROUTE, "200") >= 1.0, "v2 came from B");
}

#[test]
fn replicas_on_one_data_directory_serve_every_artifact_published_through_either() {
    let w = World::new();
    // Replica B on the same --data-dir, started before anything is published through A.
    let b_dir = w.sandbox.join("replica-b");
    std::fs::create_dir_all(&b_dir).expect("replica dir");
    let tokens = w.sandbox.join("worker.tokens");
    let shared = w.server.data_dir.to_string_lossy().into_owned();
    let b = Server::start(
        &b_dir,
        &w.trust,
        &[
            "--data-dir",
            &shared,
            "--worker-token-file",
            &tokens.to_string_lossy(),
        ],
    );
    let contents = vec![0x5a_u8; 8192];
    let release = w.publish_written(V2, "artifact-v2", &contents);
    let sha = release.signed.artifacts[0].sha256.clone();
    let path = format!("/api/worker-updates/artifacts/{sha}");
    let from_b = Api::new(&b.url, Some(&w.server.worker_token)).get(&path);
    assert_eq!(from_b.status, 200, "B serves what A stored: {from_b:?}");
    assert_eq!(from_b.body, contents);
    // A file under a wrong name is never served.
    let forged = "cd".repeat(32);
    std::fs::write(w.server.data_dir.join("artifacts").join(&forged), &contents).expect("write");
    let refused = Api::new(&b.url, Some(&w.server.worker_token))
        .get(&format!("/api/worker-updates/artifacts/{forged}"));
    assert_eq!(refused.status, 404, "{refused:?}");
    assert!(b.log().contains("does not hash to its name"), "{}", b.log());
}

#[test]
fn a_poll_answers_304_from_memory_while_the_database_is_locked() {
    let w = World::new();
    let release = w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    w.server.promote("stable", V2, 100);
    let worker = w.server.worker();
    let first = worker.latest("stable", V1, "w-1");
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    // Another process holds the database's write lock: any store write waits (busy timeout 5 s).
    let db = rusqlite::Connection::open(w.server.data_dir.join("update-server.sqlite3"))
        .expect("open the server's database");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    // Sightings the store must learn of (a changed version, a new worker): still 304 at once.
    for (version, worker_id) in [(V2, "w-1"), (V1, "w-2")] {
        let started = std::time::Instant::now();
        let reply = worker.send(
            reqwest::Method::GET,
            &format!(
                "/api/worker-updates/latest?channel=stable&platform={PLATFORM}&current_version={version}&worker_id={worker_id}"
            ),
            |r| r.header("If-None-Match", &etag),
        );
        assert_eq!(reply.status, 304, "{reply:?}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered without waiting on the store: {:?}",
            started.elapsed()
        );
    }
    // Written behind once the lock is gone.
    db.execute_batch("COMMIT").expect("unlock");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored: Vec<(String, String)> = db
            .prepare("SELECT worker_id, version FROM workers ORDER BY worker_id")
            .and_then(|mut s| {
                s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .expect("read workers");
        if stored
            == [
                ("w-1".to_owned(), V2.to_owned()),
                ("w-2".to_owned(), V1.to_owned()),
            ]
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sightings not written behind: {stored:?}\n{}",
            w.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(release);
}
