//! Parses arbitrary bytes as each of the four document types and runs every verification the
//! agent and the tools run on them, against a fixed trusted root and fixed signed documents.
//!
//! Must never panic. Three invariants are checked (a panic here is a real bug):
//!
//! 1. Round trip: a document that parses, serialised and parsed again, is equal and has
//!    identical `canonical_signed()` bytes (the bytes signatures cover).
//! 2. Binding: a document whose signatures verify against the fixed root has exactly the
//!    content the fixed keys signed (nothing else can carry a valid signature).
//! 3. Lossless signing: when a document has canonical bytes at all, decoding them gives the
//!    same JSON (integers compared exactly, floats as doubles), so no two different documents
//!    share the bytes a signature covers (`canonical_json` must refuse integers beyond 2^53 that
//!    a double cannot hold).

#![no_main]

use std::fmt::Debug;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use manifests::{
    follow_root_chain, verify_rotation, verify_update, ArtifactVerifier, ChannelStatement,
    Decision, Document, ExpirationEnforcement, LocalState, Release, RoleName, Rollback, Root,
    Signed, UpdateCheck,
};
use manifests_fuzz::{Fixture, PLATFORM};

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let fixture = manifests_fuzz::build();
        manifests_fuzz::self_check(&fixture);
        fixture
    })
}

/// Consumes a result the way a caller would: errors are displayed and classified.
fn sink<T>(result: manifests::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            std::hint::black_box((error.to_string(), error.reason()));
            None
        }
    }
}

fn sink_decision(decision: Decision) {
    std::hint::black_box(decision.reason());
    match decision {
        Decision::Reject(error) => {
            std::hint::black_box(error.to_string());
        }
        Decision::Install { plan, statement } => {
            std::hint::black_box((plan, statement));
        }
        Decision::NothingToDo { why, statement } => {
            std::hint::black_box((why, statement));
        }
    }
}

/// Invariant 1: serialise, parse again, compare documents and canonical bytes.
fn check_round_trip<T: Document + PartialEq + Debug>(doc: &Signed<T>) {
    check_lossless(doc);
    for bytes in [
        serde_json::to_vec(doc).expect("a parsed document serialises"),
        doc.to_json_pretty().expect("a parsed document serialises (pretty)"),
    ] {
        let again = Signed::<T>::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "re-serialised {} document does not parse: {error}\n{}",
                T::TYPE,
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            &again,
            doc,
            "{} document changed across serialise + parse",
            T::TYPE
        );
        match (doc.canonical_signed(), again.canonical_signed()) {
            (Ok(first), Ok(second)) => assert!(
                first == second,
                "canonical bytes of a {} document changed across serialise + parse:\n{}\n{}",
                T::TYPE,
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&second)
            ),
            (Err(_), Err(_)) => {}
            (first, second) => panic!(
                "canonical encoding of a {} document: {:?} before, {:?} after serialise + parse",
                T::TYPE,
                first.map(|b| String::from_utf8_lossy(&b).into_owned()),
                second.map(|b| String::from_utf8_lossy(&b).into_owned())
            ),
        }
    }
}

/// Invariant 3: the canonical encoding loses nothing.
fn check_lossless<T: Document + Debug>(doc: &Signed<T>) {
    let Ok(canonical) = doc.canonical_signed() else {
        return;
    };
    let decoded: serde_json::Value =
        serde_json::from_slice(&canonical).expect("canonical JSON parses");
    let original = serde_json::to_value(&doc.signed).expect("a parsed document serialises");
    assert!(
        same_json(&original, &decoded),
        "canonical encoding of a {} document is lossy:\n{original}\nsigned as\n{}",
        T::TYPE,
        String::from_utf8_lossy(&canonical)
    );
}

/// JSON equality with RFC 8785's number model: two integers must be equal exactly; a float is
/// an IEEE double, compared as one (`1` = `1.0`, `-0.0` = `0`, `1152921504606846976.0` =
/// `1152921504606847000`).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    fn integer(n: &serde_json::Number) -> Option<i128> {
        n.as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (integer(x), integer(y)) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Invariant 2: only the signed content verifies.
fn check_binding<T: Document + PartialEq + Debug>(doc: &Signed<T>, signed: &[&T]) {
    assert!(
        signed.iter().any(|s| *s == &doc.signed),
        "a {} document verifies but is not what the fixed keys signed:\n{:#?}",
        T::TYPE,
        doc.signed
    );
}

fn with_accepted(local: &LocalState, fx: &Fixture) -> LocalState {
    let mut local = local.clone();
    local.accepted_serial = Some(fx.channel.signed.serial);
    local.accepted_statement_sha256 = fx.channel.signed_sha256().ok();
    local
}

fn artifacts(release: &Release, data: &[u8]) {
    std::hint::black_box(release.artifact_for(PLATFORM));
    for artifact in &release.artifacts {
        let mut verifier = ArtifactVerifier::new(artifact, "fuzz");
        let (head, tail) = data.split_at(data.len() / 2);
        if sink(verifier.update(head)).is_some() {
            std::hint::black_box(verifier.remaining());
            if sink(verifier.update(tail)).is_some() {
                std::hint::black_box((verifier.seen(), verifier.remaining()));
                sink(verifier.finish());
            }
        }
    }
}

fn update_decisions(root: &Root, fx: &Fixture) {
    sink_decision(verify_update(root, &fx.channel, &fx.release, &fx.local, fx.now));
    sink_decision(
        UpdateCheck {
            root,
            channel: &fx.channel,
            release: &fx.release,
            rollback: Some(&fx.rollback),
            ignore_cohort: false,
        }
        .decide(&fx.local_newer, fx.now),
    );
}

fn fuzz_root(doc: &Signed<Root>, fx: &Fixture) {
    check_round_trip(doc);
    sink(doc.signed.validate());
    sink(doc.signed_sha256());
    for enforcement in [ExpirationEnforcement::Safe, ExpirationEnforcement::Unsafe] {
        if let Some(root) = sink(doc.verify_self(fx.now, enforcement)) {
            // A self-signed root an operator might install: use it as the trust anchor.
            sink(root.verify_signed(RoleName::Release, &fx.release));
            sink(root.verify_signed(RoleName::Channel, &fx.channel));
            update_decisions(&root, fx);
        }
    }
    if sink(fx.root.verify_signed(RoleName::Root, doc)).is_some() {
        check_binding(doc, &[&fx.signed_root.signed, &fx.root_2.signed]);
    }
    if let Some(next) = sink(verify_rotation(&fx.root, doc)) {
        check_binding(doc, &[&fx.root_2.signed]);
        update_decisions(&next, fx);
    }
    sink(follow_root_chain(
        &fx.root,
        std::slice::from_ref(doc),
        fx.now,
        ExpirationEnforcement::Safe,
    ));
    sink(follow_root_chain(
        &fx.root,
        &[fx.root_2.clone(), doc.clone()],
        fx.now,
        ExpirationEnforcement::Safe,
    ));
    // The parsed root as an (unverified) trust anchor: arbitrary keys, roles and thresholds
    // against genuinely signed documents.
    sink(doc.signed.verify_signed(RoleName::Release, &fx.release));
    sink(doc.signed.verify_signed(RoleName::Channel, &fx.channel));
    sink(doc.signed.verify_signed(RoleName::Root, &fx.signed_root));
    update_decisions(&doc.signed, fx);
}

fn fuzz_release(doc: &Signed<Release>, fx: &Fixture, data: &[u8]) {
    check_round_trip(doc);
    sink(doc.signed.validate());
    sink(doc.signed_sha256());
    artifacts(&doc.signed, data);
    if sink(fx.root.verify_signed(RoleName::Release, doc)).is_some() {
        check_binding(doc, &[&fx.release.signed]);
    }
    sink_decision(verify_update(&fx.root, &fx.channel, doc, &fx.local, fx.now));
    sink_decision(
        UpdateCheck {
            root: &fx.root,
            channel: &fx.channel,
            release: doc,
            rollback: Some(&fx.rollback),
            ignore_cohort: true,
        }
        .decide(&fx.local_newer, fx.now),
    );
}

fn fuzz_channel(doc: &Signed<ChannelStatement>, fx: &Fixture) {
    check_round_trip(doc);
    sink(doc.signed_sha256());
    if sink(fx.root.verify_signed(RoleName::Channel, doc)).is_some() {
        check_binding(doc, &[&fx.channel.signed]);
    }
    sink_decision(verify_update(&fx.root, doc, &fx.release, &fx.local, fx.now));
    sink_decision(verify_update(
        &fx.root,
        doc,
        &fx.release,
        &with_accepted(&fx.local, fx),
        fx.now,
    ));
    sink_decision(
        UpdateCheck {
            root: &fx.root,
            channel: doc,
            release: &fx.release,
            rollback: Some(&fx.rollback),
            ignore_cohort: false,
        }
        .decide(&fx.local_newer, fx.now),
    );
}

fn fuzz_rollback(doc: &Signed<Rollback>, fx: &Fixture) {
    check_round_trip(doc);
    sink(doc.signed_sha256());
    if sink(fx.root.verify_signed(RoleName::Release, doc)).is_some() {
        check_binding(doc, &[&fx.rollback.signed]);
    }
    sink_decision(
        UpdateCheck {
            root: &fx.root,
            channel: &fx.channel,
            release: &fx.release,
            rollback: Some(doc),
            ignore_cohort: false,
        }
        .decide(&fx.local_newer, fx.now),
    );
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    if let Some(doc) = sink(Signed::<Root>::from_slice(data)) {
        fuzz_root(&doc, fx);
    }
    if let Some(doc) = sink(Signed::<Release>::from_slice(data)) {
        fuzz_release(&doc, fx, data);
    }
    if let Some(doc) = sink(Signed::<ChannelStatement>::from_slice(data)) {
        fuzz_channel(&doc, fx);
    }
    if let Some(doc) = sink(Signed::<Rollback>::from_slice(data)) {
        fuzz_rollback(&doc, fx);
    }
    // The raw bytes as a download of the fixed release's artifact.
    artifacts(&fx.release.signed, data);
});
