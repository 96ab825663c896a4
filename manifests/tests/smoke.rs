//! A minimal round trip through every document type.
use std::collections::{BTreeMap, BTreeSet};

use manifests::*;

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&format!("k{n}"), &[n; 32])
}

#[test]
fn sign_verify_decide() {
    let (r, rel, ch) = (key(1), key(2), key(3));
    let mut keys = BTreeMap::new();
    for k in [&r, &rel, &ch] {
        let p = k.public();
        keys.insert(p.keyid.clone(), Key { scheme: p.scheme, public: p.public, extra: BTreeMap::new() });
    }
    let root = Root {
        doc_type: DocType::Root,
        version: 1,
        expires: "2030-01-01T00:00:00Z".parse().unwrap(),
        keys,
        roles: Roles {
            root: Role::new(vec![r.keyid()], 1),
            release: Role::new(vec![rel.keyid()], 1),
            channel: Role::new(vec![ch.keyid()], 1),
            extra: BTreeMap::new(),
        },
        extra: BTreeMap::new(),
    };
    let root_doc = Signed::sign(root, &[&r]).unwrap();
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let root = root_doc.verify_self(now, ExpirationEnforcement::Safe).unwrap();
    let release = Signed::sign(
        Release {
            doc_type: DocType::Release,
            product: PRODUCT.into(),
            version: "2.0.0".parse().unwrap(),
            released_at: now,
            minimum_version: "1.0.0".parse().unwrap(),
            artifacts: vec![Artifact { platform: "x".into(), sha256: "ab".repeat(32), size: 3, url: "u".into(), extra: BTreeMap::new() }],
            notes: String::new(),
            extra: BTreeMap::new(),
        },
        &[&rel],
    )
    .unwrap();
    let stmt = Signed::sign(
        ChannelStatement {
            doc_type: DocType::Channel,
            channel: "stable".into(),
            serial: 1,
            issued_at: now,
            expires: now.plus_secs(86400),
            release: ReleasePointer { version: "2.0.0".parse().unwrap(), manifest_sha256: release.signed_sha256().unwrap(), extra: BTreeMap::new() },
            rollout: Rollout { percent: 100, salt: "s".into(), extra: BTreeMap::new() },
            minimum_version: "1.0.0".parse().unwrap(),
            recommended_version: "2.0.0".parse().unwrap(),
            halted: false,
            urgent: false,
            extra: BTreeMap::new(),
        },
        &[&ch],
    )
    .unwrap();
    let local = LocalState {
        product: PRODUCT.into(),
        platform: "x".into(),
        worker_id: "w".into(),
        channel: "stable".into(),
        current_version: "1.0.0".parse().unwrap(),
        accepted_serial: None,
        accepted_statement_sha256: None,
        quarantined: BTreeSet::new(),
    };
    let text = stmt.to_json_pretty().unwrap();
    let reparsed = Signed::<ChannelStatement>::from_slice(&text).unwrap();
    match verify_update(&root, &reparsed, &release, &local, now.plus_secs(10)) {
        Decision::Install { plan, .. } => assert_eq!(plan.version.to_string(), "2.0.0"),
        other => panic!("{other:?}"),
    }
    let mut tampered = release.clone();
    tampered.signed.notes = "evil".into();
    assert_eq!(verify_update(&root, &stmt, &tampered, &local, now).reason(), Some(Reason::BadSignature));
}
