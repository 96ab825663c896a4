//! Shared by the `parse_verify` fuzz target and the `gen_seeds` seed generator: a fixed trust
//! root, release/channel/rollback documents signed by it, and the agent state used to verify
//! them. Everything is derived from fixed seeds and timestamps, so it is the same on every run.

use std::collections::{BTreeMap, BTreeSet};

use manifests::{
    Artifact, ChannelStatement, DocType, Key, LocalState, PrivateKey, Release, ReleasePointer,
    Role, Roles, Rollback, Rollout, Root, Signed, Timestamp, Version, PRODUCT,
};

/// The platform of the fixed release's only artifact (and of the fixed agent).
pub const PLATFORM: &str = "x86_64-unknown-linux-gnu";

/// The fixed documents and state.
#[derive(Debug)]
pub struct Fixture {
    /// The trusted root (version 1), already verified.
    pub root: Root,
    /// `root` signed by its own root key.
    pub signed_root: Signed<Root>,
    /// Version 2 of the root, rotating the root role to a second key; signed by both.
    pub root_2: Signed<Root>,
    /// `worker-agent` 1.1.0, signed by the release key.
    pub release: Signed<Release>,
    /// Channel `stable` pointing at `release`, signed by the channel key.
    pub channel: Signed<ChannelStatement>,
    /// Allows 1.2.0 -> 1.1.0, signed by the release key.
    pub rollback: Signed<Rollback>,
    /// The instant all verification uses (inside every document's validity).
    pub now: Timestamp,
    /// An agent on 1.0.0 following `stable` (the fixed release is an upgrade for it).
    pub local: LocalState,
    /// An agent on 1.2.0 (the fixed release is a downgrade for it: rollback path).
    pub local_newer: LocalState,
}

fn ts(text: &str) -> Timestamp {
    text.parse().expect("fixed timestamp")
}

fn v(text: &str) -> Version {
    Version::parse(text).expect("fixed version")
}

fn make_root(version: u64, root_key: &PrivateKey, release: &PrivateKey, channel: &PrivateKey) -> Root {
    let mut keys = BTreeMap::new();
    for key in [root_key, release, channel] {
        let public = key.public();
        keys.insert(
            public.keyid.clone(),
            Key {
                scheme: public.scheme,
                public: public.public,
                extra: BTreeMap::new(),
            },
        );
    }
    Root {
        doc_type: DocType::Root,
        version,
        expires: ts("2036-01-01T00:00:00Z"),
        keys,
        roles: Roles {
            root: Role::new(vec![root_key.keyid()], 1),
            release: Role::new(vec![release.keyid()], 1),
            channel: Role::new(vec![channel.keyid()], 1),
            extra: BTreeMap::new(),
        },
        extra: BTreeMap::new(),
    }
}

fn local(version: &str) -> LocalState {
    LocalState {
        product: PRODUCT.to_owned(),
        platform: PLATFORM.to_owned(),
        worker_id: "fuzz-worker-1".to_owned(),
        channel: "stable".to_owned(),
        current_version: v(version),
        accepted_serial: None,
        accepted_statement_sha256: None,
        quarantined: BTreeSet::new(),
    }
}

/// Builds the fixture (a few signatures: call once).
pub fn build() -> Fixture {
    let root_key = PrivateKey::from_seed("fuzz-root", &[0x11; 32]);
    let root_key_2 = PrivateKey::from_seed("fuzz-root-2", &[0x12; 32]);
    let release_key = PrivateKey::from_seed("fuzz-release", &[0x13; 32]);
    let channel_key = PrivateKey::from_seed("fuzz-channel", &[0x14; 32]);

    let root = make_root(1, &root_key, &release_key, &channel_key);
    let signed_root = Signed::sign(root.clone(), &[&root_key]).expect("sign root");
    // Rotation checks the new root against the old root's keys and its own, so root 2 only
    // defines its own keys.
    let root_2 = make_root(2, &root_key_2, &release_key, &channel_key);
    let root_2 = Signed::sign(root_2, &[&root_key, &root_key_2]).expect("sign root 2");

    let release = Signed::sign(
        Release {
            doc_type: DocType::Release,
            product: PRODUCT.to_owned(),
            version: v("1.1.0"),
            released_at: ts("2026-01-01T00:00:00Z"),
            minimum_version: v("1.0.0"),
            artifacts: vec![Artifact {
                platform: PLATFORM.to_owned(),
                // SHA-256 of "fuzz" (4 bytes).
                sha256: "93850b707585e404e4951a3ddc1f05a34b3d4f5fc081d616f46d8a2e8f1c8e68"
                    .to_owned(),
                size: 4,
                url: "worker-agent-1.1.0-x86_64-unknown-linux-gnu".to_owned(),
                mirrors: Vec::new(),
                deltas: Vec::new(),
                extra: BTreeMap::new(),
            }],
            notes: "fuzz fixture".to_owned(),
            extra: BTreeMap::new(),
        },
        &[&release_key],
    )
    .expect("sign release");

    let channel = Signed::sign(
        ChannelStatement {
            doc_type: DocType::Channel,
            channel: "stable".to_owned(),
            serial: 1,
            issued_at: ts("2026-01-01T00:00:00Z"),
            expires: ts("2026-01-02T00:00:00Z"),
            release: ReleasePointer {
                version: v("1.1.0"),
                manifest_sha256: release.signed_sha256().expect("hash release"),
                extra: BTreeMap::new(),
            },
            rollout: Rollout {
                percent: 100,
                salt: "worker-agent-1.1.0".to_owned(),
                wave: None,
                extra: BTreeMap::new(),
            },
            minimum_version: v("1.0.0"),
            recommended_version: v("1.1.0"),
            halted: false,
            urgent: false,
            extra: BTreeMap::new(),
        },
        &[&channel_key],
    )
    .expect("sign channel statement");

    let rollback = Signed::sign(
        Rollback {
            doc_type: DocType::Rollback,
            product: PRODUCT.to_owned(),
            from: vec![v("1.2.0")],
            to: v("1.1.0"),
            issued_at: ts("2026-01-01T00:00:00Z"),
            expires: ts("2026-02-01T00:00:00Z"),
            reason: "fuzz fixture".to_owned(),
            extra: BTreeMap::new(),
        },
        &[&release_key],
    )
    .expect("sign rollback directive");

    Fixture {
        root,
        signed_root,
        root_2,
        release,
        channel,
        rollback,
        now: ts("2026-01-01T12:00:00Z"),
        local: local("1.0.0"),
        local_newer: local("1.2.0"),
    }
}

/// The fixed documents as seed inputs: `(file name, compact JSON)`.
pub fn seeds(fixture: &Fixture) -> Vec<(&'static str, Vec<u8>)> {
    let json = |value: serde_json::Result<Vec<u8>>| value.expect("serialise fixture document");
    vec![
        ("root.json", json(serde_json::to_vec(&fixture.signed_root))),
        ("root-2.json", json(serde_json::to_vec(&fixture.root_2))),
        ("release.json", json(serde_json::to_vec(&fixture.release))),
        ("channel.json", json(serde_json::to_vec(&fixture.channel))),
        ("rollback.json", json(serde_json::to_vec(&fixture.rollback))),
    ]
}

/// Panics unless the fixture verifies end to end (so the fuzzer can reach the deep paths):
/// the release installs on 1.0.0, installs as a rollback on 1.2.0 with the directive, and root 2
/// is a valid rotation.
pub fn self_check(fixture: &Fixture) {
    use manifests::{verify_rotation, Decision, ExpirationEnforcement, UpdateCheck};
    fixture
        .signed_root
        .verify_self(fixture.now, ExpirationEnforcement::Safe)
        .expect("fixture root verifies");
    verify_rotation(&fixture.root, &fixture.root_2).expect("fixture root 2 is a rotation");
    let check = |local: &LocalState, rollback: Option<&Signed<Rollback>>| UpdateCheck {
        root: &fixture.root,
        channel: &fixture.channel,
        release: &fixture.release,
        rollback,
        ignore_cohort: false,
    }
    .decide(local, fixture.now);
    match check(&fixture.local, None) {
        Decision::Install { plan, .. } => assert!(!plan.is_rollback),
        other => panic!("fixture update on 1.0.0: {other:?}"),
    }
    match check(&fixture.local_newer, Some(&fixture.rollback)) {
        Decision::Install { plan, .. } => assert!(plan.is_rollback),
        other => panic!("fixture rollback on 1.2.0: {other:?}"),
    }
    let artifact = &fixture.release.signed.artifacts[0];
    let mut verifier = manifests::ArtifactVerifier::new(artifact, "fixture");
    verifier.update(b"fuzz").expect("artifact bytes");
    verifier.finish().expect("fixture artifact verifies");
}
