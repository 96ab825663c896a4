//! Two `update-server` replicas on one PostgreSQL database (issue 15), with real processes: two
//! real servers on one throwaway cluster's database and one shared `--data-dir`, real agents,
//! real `kill -9`. Wake-ups cross replicas (`LISTEN/NOTIFY`), the admin lock is shared (an
//! advisory lock), serials come from the database and only grow, re-signing and auto-halt
//! happen once, and a replica killed mid-promote leaves nothing half-applied.

use std::time::{Duration, Instant};

use e2e::agent_at_version;
use e2e::fleet::{metric, Server, PLATFORM};
use e2e::postgres::{cluster, database};
use e2e::world::World;
use manifests::Timestamp;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// A world whose server (replica A) keeps its state in a new PostgreSQL database, and replica B
/// on the same database and data directory, with the same trust and tokens. Both get `extra`.
/// Returns the database's name too.
fn two_replicas(extra: &[&str]) -> (World, Server, String) {
    let url = database();
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let mut args = vec!["--database-url", url.as_str()];
    args.extend(extra);
    let w = World::builder().server_args(&args).start();
    let b_dir = w.sandbox.join("replica-b");
    std::fs::create_dir_all(&b_dir).expect("replica dir");
    let shared = w.server.data_dir.to_string_lossy().into_owned();
    let admin_tokens = w
        .sandbox
        .join("admin.tokens")
        .to_string_lossy()
        .into_owned();
    let worker_tokens = w
        .sandbox
        .join("worker.tokens")
        .to_string_lossy()
        .into_owned();
    let mut b_args = vec![
        "--data-dir",
        &shared,
        "--admin-token-file",
        &admin_tokens,
        "--worker-token-file",
        &worker_tokens,
    ];
    b_args.extend(&args);
    let mut b = Server::start(&b_dir, &w.trust, &b_args);
    b.admin_token.clone_from(&w.server.admin_token);
    b.worker_token.clone_from(&w.server.worker_token);
    (w, b, name)
}

/// The serial and version of the statement `server` serves on stable.
fn served_statement(server: &Server) -> (u64, String) {
    let body = server.worker().latest("stable", V1, "probe").json();
    let signed = &body["channel"]["signed"];
    (
        signed["serial"].as_u64().unwrap_or(0),
        signed["release"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Waits (bounded) until `check` holds; panics with `what` after `limit`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// The audit entries of `kind` on `channel`, oldest first.
fn audit_entries(server: &Server, kind: &str, channel: &str) -> Vec<serde_json::Value> {
    let reply = server
        .admin()
        .get(&format!(
            "/api/admin/audit?limit=500&kind={kind}&channel={channel}"
        ))
        .json();
    let mut entries = reply["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    entries
}

#[test]
fn a_promote_through_one_replica_wakes_a_long_poll_held_on_the_other() {
    let (w, b, _) = two_replicas(&[]);
    w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    let worker_b = b.worker();
    let first = worker_b.latest("stable", V1, "w-1");
    assert_eq!(first.status, 200, "{first:?}");
    let etag = first.header("etag").expect("ETag").to_owned();
    let poll = std::thread::spawn(move || {
        let reply = worker_b.send(
            reqwest::Method::GET,
            &format!(
                "/api/worker-updates/latest?channel=stable&platform={PLATFORM}&current_version={V1}&worker_id=w-1&wait=30"
            ),
            |r| r.header("If-None-Match", &etag),
        );
        (reply, Instant::now())
    });
    // The long poll is parked on B before A changes anything.
    std::thread::sleep(Duration::from_secs(1));
    let sent = Instant::now();
    let summary = w.server.promote("stable", V2, 100);
    let returned = Instant::now();
    let (reply, answered) = poll.join().expect("long poll thread");
    assert_eq!(reply.status, 200, "B's long poll answered: {reply:?}");
    let body = reply.json();
    assert_eq!(body["channel"]["signed"]["serial"], summary["serial"]);
    assert_eq!(body["channel"]["signed"]["release"]["version"], V2);
    println!(
        "replicas: the long poll on B answered {:?} after the promote on A was sent, {:?} after it returned",
        answered.duration_since(sent),
        answered.saturating_duration_since(returned)
    );
    // Woken by the notification, not by the periodic re-read.
    let log = b.log();
    assert!(
        log.lines().any(
            |line| line.contains("channel changed through another replica")
                && line.contains("\"via\":\"notification\"")
                && line.contains("\"channel\":\"stable\"")
        ),
        "B says the notification brought the change: {log}"
    );
}

#[test]
fn an_agent_on_both_replicas_carries_on_through_b_when_a_is_killed_and_serials_keep_growing() {
    let (mut w, b, _) = two_replicas(&[]);
    let (v1, v2) = (agent_at_version(V1), agent_at_version(V2));
    w.publish(V1, &[(PLATFORM, &v1)]);
    w.publish(V2, &[(PLATFORM, &v2)]);
    let mut served = vec![w.server.promote("stable", V1, 100)["serial"]
        .as_u64()
        .expect("serial")];
    let a_url = w.server.url.clone();
    let agent = w
        .agent(V1)
        .via(&format!("{a_url},{}", b.url))
        .flags(&["--poll-interval-secs", "2"])
        .start();
    agent.wait_until("polls A", Duration::from_secs(60), |_| {
        let metrics = w.server.admin().get("/metrics").text();
        metric(
            &metrics,
            "update_server_http_requests_total{route=\"/api/worker-updates/latest\",status=\"200\"}",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    // A dies; v2 is promoted through B, which A's publication reached only through the store.
    w.server.stop();
    served.push(
        b.promote("stable", V2, 100)["serial"]
            .as_u64()
            .expect("serial"),
    );
    let success = format!("success {V1}->{V2}");
    agent.wait_until("the success report on B", Duration::from_secs(120), |_| {
        b.reports().contains(&success)
    });
    agent.wait_until("v2 serving", Duration::from_secs(30), |a| {
        a.serves_version(V2)
    });
    let metrics = b.admin().get("/metrics").text();
    assert!(
        metric(
            &metrics,
            "update_server_http_requests_total{route=\"/api/worker-updates/artifacts/{sha256}\",status=\"200\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "v2 came from B: {metrics}"
    );
    // A comes back: its next statement's serial is above every one served before, and B serves it.
    w.server.start_again();
    let halted = w.server.admin().post_json(
        "/api/admin/channels/stable/halt",
        &serde_json::json!({"reason": "replica A is back"}),
    );
    assert_eq!(halted.status, 200, "{}", halted.text());
    let serial = halted.json()["serial"].as_u64().expect("serial");
    let highest = served.iter().copied().max().unwrap_or(0);
    println!("replicas: serials served {served:?}, then {serial} through the restarted A");
    assert!(serial > highest, "{serial} above {served:?}");
    wait_for(
        "B serves A's new statement",
        Duration::from_secs(20),
        || served_statement(&b).0 == serial,
    );
}

/// The advisory lock key of the server's admin lock (`postgres/replicas.rs`).
const ADMIN_LOCK: i64 = 0x7570_6473_0002;

/// Holds the replicas' admin lock from a session of the test until the returned session is
/// ended with [`end_session`], once `waiting` replica sessions queue behind it.
fn hold_admin_lock(db: &str) -> std::process::Child {
    let pg = cluster();
    let locker = pg.psql_session(
        db,
        "e2e-admin-lock",
        &format!("SELECT pg_advisory_lock({ADMIN_LOCK}); SELECT pg_sleep(120);"),
    );
    wait_for(
        "the test holds the admin lock",
        Duration::from_secs(20),
        || {
            backends(
                db,
                "application_name = 'e2e-admin-lock' AND wait_event = 'PgSleep'",
            ) == 1
        },
    );
    locker
}

/// Sessions of database `db` matching `condition`.
fn backends(db: &str, condition: &str) -> i64 {
    cluster()
        .psql(
            db,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND {condition}"
            ),
        )
        .trim()
        .parse()
        .unwrap_or(-1)
}

/// Ends the session `application_name` (its locks go with it) and reaps `child`.
fn end_session(db: &str, application_name: &str, mut child: std::process::Child) {
    cluster().psql(
        db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = '{application_name}'"),
    );
    let _ = child.wait();
}

/// Both replicas wait for the admin lock (held by the test).
const BOTH_WAIT: &str = "wait_event_type = 'Lock' AND wait_event = 'advisory'";

#[test]
fn statements_are_re_signed_once_not_once_per_replica() {
    let (w, b, db) = two_replicas(&["--statement-ttl", "6s", "--resign-before", "4s"]);
    w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    w.server.promote("stable", V2, 100);
    // A statement of 6 s is due 4 s before it expires, 2 s after it was signed. While the test
    // holds the admin lock, both replicas find it due and queue for the lock: the first to get
    // it re-signs, the other one, re-reading the channel under the lock, finds it done.
    let locker = hold_admin_lock(&db);
    wait_for(
        "both replicas queue for the admin lock to re-sign",
        Duration::from_secs(20),
        || backends(&db, BOTH_WAIT) == 2,
    );
    end_session(&db, "e2e-admin-lock", locker);
    std::thread::sleep(Duration::from_secs(5));
    let entries = audit_entries(&b, "resign", "stable");
    let times: Vec<i64> = entries
        .iter()
        .map(|e| {
            e["at"]
                .as_str()
                .unwrap_or_default()
                .parse::<Timestamp>()
                .map_or(0, |t| t.unix())
        })
        .collect();
    println!("replicas: re-signs at {times:?}");
    assert!(!entries.is_empty(), "re-signed at all");
    // Issued at second S, a statement is due at S + 2: a second replica re-signing the same due
    // statement would stand less than 2 s after the first.
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 2,
            "one re-sign per due statement, not one per replica: {entries:?}"
        );
    }
    // Both replicas serve the newest statement.
    let newest = served_statement(&w.server).0;
    wait_for(
        "B serves the newest statement",
        Duration::from_secs(10),
        || served_statement(&b).0 >= newest,
    );
}

#[test]
fn auto_halt_happens_once_when_failures_reach_both_replicas_at_once() {
    let (w, b, db) = two_replicas(&["--auto-halt-failures", "2"]);
    w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    w.server.promote("canary", V2, 100);
    // Failures from four workers, two through each replica, while the test holds the admin
    // lock: both replicas count enough failures and queue for the lock to halt.
    let locker = hold_admin_lock(&db);
    let reporters: Vec<_> = (0..4)
        .map(|n| {
            let api = if n % 2 == 0 { w.server.worker() } else { b.worker() };
            std::thread::spawn(move || {
                let reply = api.post_json(
                    "/api/worker-updates/report",
                    &serde_json::json!({"worker_id": format!("c{n}"), "correlation_id": format!("c-{n}"),
                        "from_version": V1, "to_version": V2, "outcome": "rolled_back",
                        "reason": "died_in_probation", "duration_ms": 10,
                        "at": Timestamp::now().to_string(), "channel": "canary"}),
                );
                assert_eq!(reply.status, 202, "{}", reply.text());
            })
        })
        .collect();
    wait_for(
        "both replicas queue for the admin lock to halt",
        Duration::from_secs(20),
        || backends(&db, BOTH_WAIT) == 2,
    );
    end_session(&db, "e2e-admin-lock", locker);
    for reporter in reporters {
        reporter.join().expect("reporter");
    }
    let halts = audit_entries(&w.server, "auto_halt", "canary");
    assert_eq!(
        halts.len(),
        1,
        "one auto-halt, not one per replica: {halts:?}"
    );
    for server in [&w.server, &b] {
        wait_for(
            "both replicas serve the halt",
            Duration::from_secs(10),
            || {
                server.worker().latest("canary", V1, "probe").json()["channel"]["signed"]["halted"]
                    == true
            },
        );
    }
}

#[test]
fn kill_9_of_a_replica_mid_promote_leaves_no_half_applied_change() {
    let (mut w, b, db) = two_replicas(&[]);
    w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    let first = w.server.promote("stable", V2, 10);
    let pg = cluster();
    let count = |sql: &str| -> i64 { pg.psql(&db, sql).trim().parse().unwrap_or(-1) };
    // Another session holds `promotions`: A's promote writes the channel, the statement and the
    // audit entry in its transaction, then waits there for the promotion row.
    let locker = pg.psql_session(
        &db,
        "e2e-locker",
        "BEGIN; LOCK TABLE promotions IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); ROLLBACK;",
    );
    wait_for("the lock is held", Duration::from_secs(20), || {
        count(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
               WHERE c.relname = 'promotions' AND l.mode = 'AccessExclusiveLock' AND l.granted",
        ) == 1
    });
    let promote_url = format!("{}/api/admin/channels/stable/promote", w.server.url);
    let token = w.server.admin_token.clone();
    let promote = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(promote_url)
            .bearer_auth(token)
            .json(&serde_json::json!({"version": V2, "percent": 100, "override": true, "reason": "test"}))
            .timeout(Duration::from_secs(60))
            .send()
            .map(|r| r.status().as_u16())
    });
    wait_for(
        "A's promote waits inside its transaction",
        Duration::from_secs(20),
        || {
            count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO promotions%'",
            ) == 1
        },
    );
    w.server.stop();
    assert!(
        promote.join().expect("promote thread").is_err(),
        "the promote never answered"
    );
    end_session(&db, "e2e-locker", locker);
    // A's session ends without a commit once it has its lock (nobody sends COMMIT).
    wait_for("A's session is gone", Duration::from_secs(20), || {
        count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND (wait_event_type = 'Lock' OR state LIKE 'idle in transaction%')",
        ) == 0
    });
    let serial = first["serial"].as_i64().expect("serial");
    assert_eq!(
        count("SELECT MAX(serial) FROM statements WHERE channel = 'stable'"),
        serial,
        "no statement of the killed promote"
    );
    assert_eq!(
        count("SELECT count(*) FROM promotions WHERE channel = 'stable'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM audit WHERE kind = 'promote'"),
        1,
        "no audit entry of the killed promote"
    );
    let stored_percent = pg.psql(
        &db,
        "SELECT convert_from(statement, 'UTF8')::json->'signed'->'rollout'->>'percent' FROM channels WHERE channel = 'stable'",
    );
    assert_eq!(stored_percent.trim(), "10", "the channel as before");
    let body = b.worker().latest("stable", V1, "probe").json();
    assert_eq!(body["channel"]["signed"]["rollout"]["percent"], 10);
    // B carries on: the next promote is the next serial.
    let next = b.promote("stable", V2, 100);
    assert_eq!(next["serial"].as_i64(), Some(serial + 1));
    assert_eq!(next["percent"], 100);
}

/// The wave a replica serves on canary: (wave number, named workers, percent).
fn served_wave(server: &Server) -> (u64, usize, u64) {
    let body = server.worker().latest("canary", V1, "probe").json();
    let rollout = &body["channel"]["signed"]["rollout"];
    (
        rollout["wave"]["number"].as_u64().unwrap_or(0),
        rollout["wave"]["workers"].as_array().map_or(0, Vec::len),
        rollout["percent"].as_u64().unwrap_or(0),
    )
}

/// Half the fleet polls A, half polls B: a promote's first wave is chosen from the whole fleet
/// (every replica's sightings, from the database) and held on both replicas until its workers
/// reported. Judged from one replica's memory, A saw only its own 5 workers (no more than the
/// first wave, so the release went to all at once), or B found the named workers absent (they
/// poll A) and opened the next wave.
#[test]
fn a_first_wave_holds_on_every_replica_when_the_fleet_polls_both() {
    let (w, b, db) = two_replicas(&[]);
    w.publish_written(V2, "artifact-v2", vec![0x5a_u8; 4096]);
    let ids: Vec<String> = (0..10).map(|i| format!("worker-{i:02}")).collect();
    let on = |i: usize| if i.is_multiple_of(2) { &w.server } else { &b };
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(on(i).worker().latest("canary", V1, id).status, 200);
    }
    // Sightings are stored behind the answers.
    wait_for("the ten sightings stored", Duration::from_secs(10), || {
        cluster()
            .psql(&db, "SELECT count(*) FROM workers WHERE channel = 'canary'")
            .trim()
            == "10"
    });
    let reply = w.server.admin().post_json(
        "/api/admin/channels/canary/promote",
        &serde_json::json!({"version": V2, "percent": 100, "first_wave": 5, "max_in_flight": "100%"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["wave"]["named"], 5, "{:#}", reply.json());
    // Both wave loops run every second: give them several turns to (wrongly) move on.
    std::thread::sleep(Duration::from_secs(4));
    for (name, server) in [("A", &w.server), ("B", &b)] {
        assert_eq!(
            served_wave(server),
            (1, 5, 0),
            "replica {name} still serves the first wave only"
        );
    }
    let named: Vec<String> = w.server.worker().latest("canary", V1, "probe").json()["channel"]
        ["signed"]["rollout"]["wave"]["workers"]
        .as_array()
        .expect("named workers")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(
        named.iter().any(|id| ids
            .iter()
            .position(|x| x == id)
            .is_some_and(|i| i.is_multiple_of(2)))
            && named.iter().any(|id| ids
                .iter()
                .position(|x| x == id)
                .is_some_and(|i| !i.is_multiple_of(2))),
        "the first wave is drawn from both replicas' workers: {named:?}"
    );
    // The named workers report success, each through the replica it polls.
    for id in &named {
        let i = ids.iter().position(|x| x == id).expect("a known worker");
        let reply = on(i).worker().post_json(
            "/api/worker-updates/report",
            &serde_json::json!({
                "worker_id": id,
                "correlation_id": format!("c-{id}"),
                "from_version": V1,
                "to_version": V2,
                "outcome": "success",
                "duration_ms": 1000,
                "at": Timestamp::now().to_string(),
                "channel": "canary",
            }),
        );
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    wait_for(
        "the release opened to the whole channel on both replicas",
        Duration::from_secs(20),
        || served_wave(&w.server).2 == 100 && served_wave(&b).2 == 100,
    );
}
