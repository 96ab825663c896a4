//! The store contract, one test body run against both real implementations: SQLite in a temp
//! dir and PostgreSQL on the test process's throwaway cluster (`e2e::postgres`).

use update_server::postgres::PostgresStore;
use update_server::sqlite::SqliteStore;
use update_server::store::{
    AuditFilter, AuditRecord, ChannelRecord, ChannelWrite, CredentialRecord, EnrollTokenRecord,
    OutcomeQuery, PutRelease, ReleaseRecord, ReportRecord, Store, StoreError, WorkerRecord,
};

fn audit(at: i64, kind: &str, channel: &str, version: &str) -> AuditRecord {
    AuditRecord {
        at,
        kind: kind.to_owned(),
        actor: "ops".to_owned(),
        channel: channel.to_owned(),
        version: version.to_owned(),
        detail: String::new(),
    }
}

fn report(worker: &str, outcome: &str, reason: &str, received_at: i64) -> ReportRecord {
    ReportRecord {
        worker_id: worker.to_owned(),
        channel: "canary".to_owned(),
        correlation_id: format!("c-{worker}"),
        from_version: "1.0.0".to_owned(),
        to_version: "1.1.0".to_owned(),
        outcome: outcome.to_owned(),
        reason: reason.to_owned(),
        duration_ms: 42,
        at: received_at,
        received_at,
        counted: true,
    }
}

/// Everything the server relies on, in one pass; `reopen` opens the same store again (a
/// restart).
fn behaves(store: &dyn Store, reopen: &dyn Fn() -> Box<dyn Store>) {
    // Roots.
    store
        .add_root(1, b"root-1", &audit(1, "root", "", ""))
        .expect("store call");
    store
        .add_root(2, b"root-2", &audit(2, "root", "", ""))
        .expect("store call");
    store
        .add_root(2, b"again", &audit(2, "root", "", ""))
        .expect("store call");
    assert_eq!(
        store.roots().expect("store call"),
        [(1, b"root-1".to_vec()), (2, b"root-2".to_vec())]
    );

    // Releases: insert, identical, re-signed, conflict.
    let mut release = ReleaseRecord {
        version: "1.1.0".to_owned(),
        manifest_sha256: "aa".to_owned(),
        body: b"signed-a".to_vec(),
        published_at: 10,
    };
    let publish = audit(10, "publish", "", "1.1.0");
    assert_eq!(
        store.put_release(&release, &publish).expect("store call"),
        PutRelease::Inserted
    );
    assert_eq!(
        store.put_release(&release, &publish).expect("store call"),
        PutRelease::Identical
    );
    release.body = b"signed-b".to_vec();
    assert_eq!(
        store.put_release(&release, &publish).expect("store call"),
        PutRelease::Resigned
    );
    release.manifest_sha256 = "bb".to_owned();
    assert_eq!(
        store.put_release(&release, &publish).expect("store call"),
        PutRelease::Conflict
    );
    let second = ReleaseRecord {
        version: "1.0.5".to_owned(),
        manifest_sha256: "cc".to_owned(),
        body: b"signed-c".to_vec(),
        published_at: 10,
    };
    store.put_release(&second, &publish).expect("store call");
    let versions: Vec<String> = store
        .releases()
        .expect("store call")
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(
        versions,
        ["1.1.0", "1.0.5"],
        "published order, ties by insertion"
    );
    assert_eq!(store.releases().expect("store call")[0].body, b"signed-b");

    // Artifacts.
    store.add_artifact("f00d", 1234, 11).expect("store call");
    store.add_artifact("f00d", 1234, 12).expect("store call");
    assert_eq!(
        store.artifacts().expect("store call"),
        [("f00d".to_owned(), 1234)]
    );

    // Channels, serials, promotions.
    assert_eq!(
        store.channel_names().expect("store call"),
        ["canary", "stable"]
    );
    assert!(store
        .create_channel("beta", &audit(13, "channel_create", "beta", ""))
        .expect("store call"));
    assert!(!store
        .create_channel("beta", &audit(13, "channel_create", "beta", ""))
        .expect("store call"));
    assert_eq!(store.max_serial("canary").expect("store call"), None);
    for serial in 1..=3u64 {
        let record = ChannelRecord {
            channel: "canary".to_owned(),
            statement: format!("statement-{serial}").into_bytes(),
            rollback: (serial == 3).then(|| b"rollback".to_vec()),
            halt_reason: String::new(),
            plan: None,
        };
        let at = 20 + i64::try_from(serial).expect("store call");
        store
            .save_channel(ChannelWrite {
                record: &record,
                serial,
                audit: &audit(at, "promote", "canary", "1.1.0"),
                promotion: Some(("1.1.0", 10)),
            })
            .expect("store call");
    }
    // A serial not above every stored one (signed before, or the same one a racing replica
    // just stored) is refused as a conflict, and nothing of that change is kept.
    let stale = ChannelRecord {
        channel: "canary".to_owned(),
        statement: b"stale".to_vec(),
        rollback: None,
        halt_reason: String::new(),
        plan: None,
    };
    for serial in [2, 3] {
        let refused = store.save_channel(ChannelWrite {
            record: &stale,
            serial,
            audit: &audit(30, "promote", "canary", "9.9.9"),
            promotion: Some(("9.9.9", 100)),
        });
        assert!(
            matches!(refused, Err(StoreError::SerialConflict { stored: 3, .. })),
            "serial {serial}: {refused:?}"
        );
    }
    assert_eq!(
        store
            .first_promotion("canary", "9.9.9")
            .expect("store call"),
        None,
        "the refused change left no promotion"
    );
    let canary = store
        .channels()
        .expect("store call")
        .into_iter()
        .find(|c| c.channel == "canary")
        .expect("store call");
    assert_eq!(canary.statement, b"statement-3");
    assert_eq!(canary.rollback.as_deref(), Some(&b"rollback"[..]));
    assert_eq!(store.max_serial("canary").expect("store call"), Some(3));
    assert_eq!(
        store
            .first_promotion("canary", "1.1.0")
            .expect("store call"),
        Some(21)
    );
    assert_eq!(
        store
            .first_promotion("canary", "2.0.0")
            .expect("store call"),
        None
    );
    store
        .delete_channel("canary", &audit(31, "channel_delete", "canary", ""))
        .expect("store call");
    assert!(store
        .channels()
        .expect("store call")
        .iter()
        .all(|c| c.channel != "canary"));
    assert_eq!(
        store.max_serial("canary").expect("store call"),
        Some(3),
        "history outlives the channel"
    );
    store
        .create_channel("canary", &audit(32, "channel_create", "canary", ""))
        .expect("store call");

    // Workers: an empty hostname or task list keeps the registered one.
    let mut worker = WorkerRecord {
        worker_id: "w-1".to_owned(),
        version: "1.0.0".to_owned(),
        platform: "x86_64-unknown-linux-gnu".to_owned(),
        channel: "canary".to_owned(),
        hostname: "encoder-1".to_owned(),
        task_types: "[\"encoding\"]".to_owned(),
        last_seen: 40,
    };
    store.upsert_worker(&worker).expect("store call");
    worker.hostname.clear();
    worker.task_types = "[]".to_owned();
    worker.version = "1.1.0".to_owned();
    worker.last_seen = 41;
    store.upsert_worker(&worker).expect("store call");
    let workers = store.workers().expect("store call");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].hostname, "encoder-1");
    assert_eq!(workers[0].task_types, "[\"encoding\"]");
    assert_eq!(workers[0].version, "1.1.0");
    assert_eq!(workers[0].last_seen, 41);

    // Reports: distinct workers per outcome; only the listed defect reasons count as failures
    // (and tries), uncounted reports not at all.
    store
        .add_report(&report("w-1", "failure", "health_check", 50))
        .expect("store call");
    store
        .add_report(&report("w-1", "failure", "health_check", 51))
        .expect("store call");
    store
        .add_report(&report("w-2", "success", "", 52))
        .expect("store call");
    store
        .add_report(&report("w-3", "failure", "downgrade", 53))
        .expect("store call");
    let mut uncounted = report("w-4", "failure", "health_check", 54);
    uncounted.counted = false;
    store.add_report(&uncounted).expect("store call");
    let counts = store
        .release_outcomes(OutcomeQuery {
            channel: "canary",
            version: "1.1.0",
            defects: &["health_check"],
        })
        .expect("store call");
    assert_eq!((counts.failed, counts.succeeded, counts.tried), (1, 1, 2));
    let failures = store.failures_since(51).expect("store call");
    assert_eq!(failures[0].reason, "health_check");
    assert_eq!(failures[0].count, 2, "{failures:?}");

    // Audit, merged with reports, newest first, filtered.
    let newest = store.audit(&AuditFilter::newest(2)).expect("store call");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].kind, "report");
    assert_eq!(newest[0].at, 54);
    assert!(
        newest[1]
            .detail
            .contains("failure downgrade 1.0.0->1.1.0 in 42 ms (correlation c-w-3)"),
        "{newest:?}"
    );
    let promotes = store
        .audit(&AuditFilter {
            limit: 10,
            channel: Some("canary".to_owned()),
            kind: Some("promote".to_owned()),
            since: Some(22),
            actor: None,
            until: None,
        })
        .expect("store call");
    assert_eq!(promotes.iter().map(|a| a.at).collect::<Vec<_>>(), [23, 22]);
    let by_actor_until = store
        .audit(&AuditFilter {
            limit: 10,
            channel: None,
            kind: None,
            since: None,
            actor: Some("w-2".to_owned()),
            until: Some(52),
        })
        .expect("store call");
    assert_eq!(
        by_actor_until.iter().map(|a| a.at).collect::<Vec<_>>(),
        [52],
        "{by_actor_until:?}"
    );
    // A channel's newest reports, oldest first (the console's progress replay).
    let replay = store.channel_reports("canary", 2).expect("store call");
    assert_eq!(
        replay.iter().map(|r| r.received_at).collect::<Vec<_>>(),
        [53, 54]
    );
    assert!(store
        .channel_reports("stable", 10)
        .expect("store call")
        .is_empty());

    // Enrolment.
    let token = EnrollTokenRecord {
        id: "tok-1".to_owned(),
        token_sha256: "ab".repeat(32),
        channel: "canary".to_owned(),
        max_uses: 2,
        uses: 0,
        expires_at: 1000,
        created_at: 60,
        created_by: "ops".to_owned(),
        revoked_at: None,
    };
    store
        .add_enroll_token(&token, &audit(60, "enroll_token_create", "", ""))
        .expect("store call");
    let credential = CredentialRecord {
        worker_id: "w-9".to_owned(),
        secret_sha256: "cd".repeat(32),
        channel: "canary".to_owned(),
        token_id: "tok-1".to_owned(),
        enrolled_at: 61,
        revoked_at: None,
    };
    store
        .enrol(&credential, &audit(61, "worker_enroll", "", ""))
        .expect("store call");
    assert!(store.revoke_credential("w-9", 62).expect("store call"));
    assert!(!store.revoke_credential("w-9", 63).expect("store call"));
    let again = CredentialRecord {
        secret_sha256: "ef".repeat(32),
        enrolled_at: 64,
        ..credential
    };
    store
        .enrol(&again, &audit(64, "worker_enroll", "", ""))
        .expect("store call");
    let credentials = store.credentials().expect("store call");
    assert_eq!(credentials, [again]);
    store
        .revoke_enroll_token("tok-1", 65, &audit(65, "enroll_token_revoke", "", ""))
        .expect("store call");
    let tokens = store.enroll_tokens().expect("store call");
    assert_eq!((tokens[0].uses, tokens[0].revoked_at), (2, Some(65)));
    store
        .record_download("w-9", "f00d", 66)
        .expect("store call");
    store
        .record_download("w-9", "f00d", 67)
        .expect("store call");
    assert!(store
        .downloaded_any("w-9", &["beef".to_owned(), "f00d".to_owned()])
        .expect("store call"));
    assert!(!store
        .downloaded_any("w-9", &["beef".to_owned()])
        .expect("store call"));
    assert!(!store
        .downloaded_any("w-8", &["f00d".to_owned()])
        .expect("store call"));

    // Forget and retention.
    assert!(store
        .forget_worker("w-1", &audit(70, "worker_forget", "", ""))
        .expect("store call"));
    assert!(!store
        .forget_worker("w-1", &audit(70, "worker_forget", "", ""))
        .expect("store call"));
    worker.worker_id = "w-2".to_owned();
    store.upsert_worker(&worker).expect("store call");
    assert_eq!(store.prune(52, &["w-2".to_owned()]).expect("store call"), 2);
    assert!(store.workers().expect("store call").is_empty());
    assert!(
        store
            .downloaded_any("w-9", &["f00d".to_owned()])
            .expect("store call"),
        "a newer download stays"
    );
    store.prune(67, &[]).expect("store call");
    assert!(
        !store
            .downloaded_any("w-9", &["f00d".to_owned()])
            .expect("store call"),
        "old downloads go"
    );

    // A restart (the migrations run again: nothing re-applied) keeps everything.
    let reopened = reopen();
    assert_eq!(reopened.max_serial("canary").expect("store call"), Some(3));
    assert_eq!(
        reopened.channel_names().expect("store call"),
        ["beta", "canary", "stable"]
    );
    assert_eq!(reopened.roots().expect("store call").len(), 2);
    assert_eq!(
        reopened
            .audit(&AuditFilter::newest(1000))
            .expect("store call")
            .len(),
        store
            .audit(&AuditFilter::newest(1000))
            .expect("store call")
            .len()
    );
}

#[test]
fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("store call");
    let path = dir.path().to_owned();
    let store = SqliteStore::open(&path).expect("store call");
    behaves(&store, &|| {
        Box::new(SqliteStore::open(&path).expect("store call"))
    });
}

#[test]
fn postgres_store_keeps_the_contract() {
    let url = e2e::postgres::database();
    let store = PostgresStore::open(&url).expect("store call");
    behaves(&store, &|| {
        Box::new(PostgresStore::open(&url).expect("store call"))
    });
}

/// Replicas starting together on a new database apply each migration once.
#[test]
fn postgres_replicas_starting_together_migrate_once() {
    let url = e2e::postgres::database();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url).map(|_| ()))
        })
        .collect();
    for opener in openers {
        opener.join().expect("store call").expect("store call");
    }
    let db = url.rsplit('/').next().expect("store call");
    let applied = e2e::postgres::cluster().psql(db, "SELECT count(*) FROM schema_migrations");
    let migrations =
        std::fs::read_dir(e2e::workspace_root().join("update-server/migrations/postgres"))
            .expect("migrations dir")
            .count();
    assert_eq!(applied.trim(), migrations.to_string());
}
