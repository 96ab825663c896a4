//! Property tests of the encoding, signing and cohort rules.
//!
//! (a) parse(serialize(doc)) == doc for arbitrary documents of all four types, and the canonical
//!     bytes survive pretty JSON and `serde_json::Value`;
//! (b) signed documents, unknown fields included, verify after those round trips;
//! (c) any change to a signed string field, to the canonical bytes, or to a signature fails;
//! (d) rollout cohorts are monotone in the percentage and about the right size.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::OnceLock;

use manifests::{
    canonical_json, cohort_bucket, in_rollout, Artifact, ChannelStatement, DocType, Document, Key,
    PrivateKey, Reason, Release, ReleasePointer, Role, RoleName, Roles, Rollback, Rollout, Root,
    Signature, Signed, Timestamp, Version,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Number, Value};

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Integers up to 2^53 - 1, the range a JSON number (an IEEE double) holds exactly.
const MAX_EXACT: u64 = (1 << 53) - 1;

fn exact_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(MAX_EXACT),
        2 => 0..1000u64,
        6 => 0..=MAX_EXACT,
    ]
}

/// Any Unicode text: control characters, quotes, backslashes, astral-plane characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::collection::vec(any::<char>(), 0..16).prop_map(|chars| chars.into_iter().collect()),
        1 => "[a-z0-9 ._/-]{0,16}",
        1 => prop::collection::vec(
            prop::sample::select(vec!['"', '\\', '/', '\u{0}', '\u{1f}', '\u{7f}', '\u{2028}', 'é', '€', '😀', '\u{fffd}']),
            0..8
        )
        .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn nonempty_text() -> impl Strategy<Value = String> {
    (text(), any::<char>()).prop_map(|(mut s, c)| {
        s.push(c);
        s
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
    (-62_135_596_800i64..=253_402_300_799).prop_map(|secs| Timestamp::from_unix(secs).unwrap())
}

fn prerelease_ident() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        "[0-9A-Za-z-]{0,4}[A-Za-z-][0-9A-Za-z-]{0,4}",
    ]
}

fn version() -> impl Strategy<Value = Version> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(prerelease_ident(), 0..3),
        prop::collection::vec("[0-9A-Za-z-]{1,6}", 0..3),
    )
        .prop_map(|(major, minor, patch, pre, build)| {
            let mut text = format!("{major}.{minor}.{patch}");
            if !pre.is_empty() {
                text = format!("{text}-{}", pre.join("."));
            }
            if !build.is_empty() {
                text = format!("{text}+{}", build.join("."));
            }
            text.parse().unwrap()
        })
}

fn hex_text(bytes: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), bytes).prop_map(hex::encode)
}

/// Any JSON value an unknown field may hold: nested arrays and objects, Unicode keys, integers
/// in the exact range, finite floats (including -0.0, subnormals, 1e300).
fn json_value() -> impl Strategy<Value = Value> {
    let finite = prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        exact_u64().prop_map(Value::from),
        exact_u64().prop_map(|n| Value::from(-(n as i64))),
        finite.prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        prop::sample::select(vec![0.1, 0.5, -1.5, 1e21, 1e-7, 3.0, 1e300, 5e-324])
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Unknown fields for a struct whose own field names are `known` (a flattened map cannot hold them).
fn extra_fields(
    known: &'static [&'static str],
    size: std::ops::Range<usize>,
) -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map(text(), json_value(), size).prop_map(move |mut map| {
        map.retain(|k, _| !known.contains(&k.as_str()));
        map
    })
}

fn extra(known: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, Value>> {
    extra_fields(known, 0..3)
}

fn artifact() -> impl Strategy<Value = Artifact> {
    (
        text(),
        hex_text(32),
        exact_u64(),
        text(),
        prop::collection::vec(text(), 0..3),
        extra(&["platform", "sha256", "size", "url", "mirrors"]),
    )
        .prop_map(|(platform, sha256, size, url, mirrors, extra)| Artifact {
            platform,
            sha256,
            size,
            url,
            mirrors,
            deltas: Vec::new(),
            extra,
        })
}

const RELEASE_FIELDS: &[&str] = &[
    "type",
    "product",
    "version",
    "released_at",
    "minimum_version",
    "artifacts",
    "notes",
];

fn release_with(
    extra_top: BoxedStrategy<BTreeMap<String, Value>>,
) -> impl Strategy<Value = Release> {
    (
        text(),
        version(),
        timestamp(),
        version(),
        prop::collection::vec(artifact(), 0..3),
        text(),
        extra_top,
    )
        .prop_map(
            |(product, version, released_at, minimum_version, artifacts, notes, extra)| Release {
                doc_type: DocType::Release,
                product,
                version,
                released_at,
                minimum_version,
                artifacts,
                notes,
                extra,
            },
        )
}

fn release() -> impl Strategy<Value = Release> {
    release_with(extra(RELEASE_FIELDS).boxed())
}

const CHANNEL_FIELDS: &[&str] = &[
    "type",
    "channel",
    "serial",
    "issued_at",
    "expires",
    "release",
    "rollout",
    "minimum_version",
    "recommended_version",
    "halted",
    "urgent",
];

fn channel_with(
    extra_top: BoxedStrategy<BTreeMap<String, Value>>,
) -> impl Strategy<Value = ChannelStatement> {
    let pointer = (
        version(),
        hex_text(32),
        extra(&["version", "manifest_sha256"]),
    )
        .prop_map(|(version, manifest_sha256, extra)| ReleasePointer {
            version,
            manifest_sha256,
            extra,
        });
    let rollout =
        (0..=100u8, text(), extra(&["percent", "salt"])).prop_map(|(percent, salt, extra)| {
            Rollout {
                percent,
                salt,
                wave: None,
                extra,
            }
        });
    (
        (text(), exact_u64(), timestamp(), timestamp()),
        pointer,
        rollout,
        (version(), version(), any::<bool>(), any::<bool>()),
        extra_top,
    )
        .prop_map(
            |(
                (channel, serial, issued_at, expires),
                release,
                rollout,
                (minimum_version, recommended_version, halted, urgent),
                extra,
            )| {
                ChannelStatement {
                    doc_type: DocType::Channel,
                    channel,
                    serial,
                    issued_at,
                    expires,
                    release,
                    rollout,
                    minimum_version,
                    recommended_version,
                    halted,
                    urgent,
                    extra,
                }
            },
        )
}

fn channel() -> impl Strategy<Value = ChannelStatement> {
    channel_with(extra(CHANNEL_FIELDS).boxed())
}

const ROLLBACK_FIELDS: &[&str] = &[
    "type",
    "product",
    "from",
    "to",
    "issued_at",
    "expires",
    "reason",
];

fn rollback_with(
    extra_top: BoxedStrategy<BTreeMap<String, Value>>,
) -> impl Strategy<Value = Rollback> {
    (
        text(),
        prop::collection::vec(version(), 0..4),
        version(),
        timestamp(),
        timestamp(),
        text(),
        extra_top,
    )
        .prop_map(
            |(product, from, to, issued_at, expires, reason, extra)| Rollback {
                doc_type: DocType::Rollback,
                product,
                from,
                to,
                issued_at,
                expires,
                reason,
                extra,
            },
        )
}

fn rollback() -> impl Strategy<Value = Rollback> {
    rollback_with(extra(ROLLBACK_FIELDS).boxed())
}

const ROOT_FIELDS: &[&str] = &["type", "version", "expires", "keys", "roles"];

fn role() -> impl Strategy<Value = Role> {
    (
        prop::collection::vec(text(), 0..3),
        any::<u32>(),
        extra(&["keyids", "threshold"]),
    )
        .prop_map(|(keyids, threshold, extra)| Role {
            keyids,
            threshold,
            extra,
        })
}

fn root_with(extra_top: BoxedStrategy<BTreeMap<String, Value>>) -> impl Strategy<Value = Root> {
    let key =
        (text(), text(), extra(&["scheme", "public"])).prop_map(|(scheme, public, extra)| Key {
            scheme,
            public,
            extra,
        });
    let roles = (
        role(),
        role(),
        role(),
        extra(&["root", "release", "channel"]),
    )
        .prop_map(|(root, release, channel, extra)| Roles {
            root,
            release,
            channel,
            extra,
        });
    (
        exact_u64(),
        timestamp(),
        prop::collection::btree_map(text(), key, 0..3),
        roles,
        extra_top,
    )
        .prop_map(|(version, expires, keys, roles, extra)| Root {
            doc_type: DocType::Root,
            version,
            expires,
            keys,
            roles,
            extra,
        })
}

fn root() -> impl Strategy<Value = Root> {
    root_with(extra(ROOT_FIELDS).boxed())
}

/// Envelopes with arbitrary (not necessarily valid) signature entries: parsing does not judge them.
fn envelope<T: Debug + Clone>(
    signed: impl Strategy<Value = T>,
) -> impl Strategy<Value = Signed<T>> {
    let signature = (text(), text()).prop_map(|(keyid, sig)| Signature { keyid, sig });
    (signed, prop::collection::vec(signature, 0..3))
        .prop_map(|(signed, signatures)| Signed { signed, signatures })
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// (a) for one document: serialise / parse identity, and one canonical form whichever way the
/// document travelled.
fn check_round_trip<T: Document + PartialEq + Debug>(doc: &Signed<T>) -> Result<(), TestCaseError> {
    let canonical = doc.canonical_signed().unwrap();

    let compact = serde_json::to_vec(doc).unwrap();
    let parsed = Signed::<T>::from_slice(&compact).unwrap();
    prop_assert_eq!(&parsed, doc);
    prop_assert_eq!(&parsed.canonical_signed().unwrap(), &canonical);

    let pretty = doc.to_json_pretty().unwrap();
    let parsed = Signed::<T>::from_slice(&pretty).unwrap();
    prop_assert_eq!(&parsed, doc);
    prop_assert_eq!(&parsed.canonical_signed().unwrap(), &canonical);
    prop_assert_eq!(
        parsed.signing_message().unwrap(),
        doc.signing_message().unwrap()
    );
    prop_assert_eq!(
        parsed.signed_sha256().unwrap(),
        doc.signed_sha256().unwrap()
    );

    let value = serde_json::to_value(doc).unwrap();
    prop_assert_eq!(&canonical_json(&value["signed"]).unwrap(), &canonical);
    let from_value: Signed<T> = serde_json::from_value(value).unwrap();
    prop_assert_eq!(&from_value, doc);
    prop_assert_eq!(&from_value.canonical_signed().unwrap(), &canonical);

    // The canonical form is a fixed point: what the signer hashed parses back to the same bytes
    // (as a typed document and as a generic value).
    let reparsed_value: Value = serde_json::from_slice(&canonical).unwrap();
    prop_assert_eq!(&canonical_json(&reparsed_value).unwrap(), &canonical);
    let reparsed: T = serde_json::from_slice(&canonical).unwrap();
    prop_assert_eq!(&canonical_json(&reparsed).unwrap(), &canonical);
    Ok(())
}

/// A root in which `key` holds every role with threshold 1.
fn trust_root(key: &PrivateKey) -> Root {
    let public = key.public();
    let mut keys = BTreeMap::new();
    keys.insert(
        public.keyid.clone(),
        Key {
            scheme: public.scheme,
            public: public.public,
            extra: BTreeMap::new(),
        },
    );
    Root {
        doc_type: DocType::Root,
        version: 1,
        expires: "2100-01-01T00:00:00Z".parse().unwrap(),
        keys,
        roles: Roles {
            root: Role::new(vec![key.keyid()], 1),
            release: Role::new(vec![key.keyid()], 1),
            channel: Role::new(vec![key.keyid()], 1),
            extra: BTreeMap::new(),
        },
        extra: BTreeMap::new(),
    }
}

fn role_for(doc_type: DocType) -> RoleName {
    match doc_type {
        DocType::Root => RoleName::Root,
        DocType::Release | DocType::Rollback => RoleName::Release,
        DocType::Channel => RoleName::Channel,
    }
}

fn verify<T: Document>(root: &Root, doc: &Signed<T>) -> Result<(), Reason> {
    root.verify_signed(role_for(T::TYPE), doc)
        .map_err(|e| e.reason())
}

/// (b) for one document: signed by a key, it verifies as signed, after pretty JSON, after compact
/// JSON and after `serde_json::Value`.
fn check_signed_round_trip<T: Document + PartialEq + Debug>(
    body: T,
    seed: [u8; 32],
) -> Result<(), TestCaseError> {
    let key = PrivateKey::from_seed("prop", &seed);
    let root = trust_root(&key);
    let doc = Signed::sign(body, &[&key]).unwrap();
    prop_assert_eq!(verify(&root, &doc), Ok(()));

    let pretty = Signed::<T>::from_slice(&doc.to_json_pretty().unwrap()).unwrap();
    prop_assert_eq!(verify(&root, &pretty), Ok(()));
    let via_value: Signed<T> = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
    prop_assert_eq!(verify(&root, &via_value), Ok(()));
    // Compact JSON yields the very same document (so the same verdict, without another ed25519
    // verification: debug builds are slow at those).
    let compact = Signed::<T>::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap();
    prop_assert_eq!(&compact, &pretty);

    // The signature is the key's, not anyone's: a root trusting another key does not accept it.
    static STRANGER: OnceLock<Root> = OnceLock::new();
    let stranger =
        STRANGER.get_or_init(|| trust_root(&PrivateKey::from_seed("stranger", &[0x5a; 32])));
    if stranger.keys != root.keys {
        prop_assert_eq!(verify(stranger, &doc), Err(Reason::Threshold));
    }
    Ok(())
}

/// Flips the bits of `mask` in byte `index % len` of `text`'s UTF-8 (repairing invalid UTF-8 the
/// lossy way, which still yields a different string).
fn flip_byte(text: &str, index: usize, mask: u8) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let index = index % bytes.len();
    bytes[index] ^= mask;
    let flipped = String::from_utf8_lossy(&bytes).into_owned();
    if flipped != text {
        return flipped;
    }
    // The flip made invalid UTF-8 that decodes back to the same text (the input held a U+FFFD,
    // whose bytes, flipped, are still an invalid sequence): put an ASCII byte there instead, which
    // always changes the text.
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'x' { b'y' } else { b'x' };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn seed() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// (a) round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn release_round_trips(doc in envelope(release())) {
        check_round_trip(&doc)?;
    }

    #[test]
    fn channel_statement_round_trips(doc in envelope(channel())) {
        check_round_trip(&doc)?;
    }

    #[test]
    fn rollback_round_trips(doc in envelope(rollback())) {
        check_round_trip(&doc)?;
    }

    #[test]
    fn root_round_trips(doc in envelope(root())) {
        check_round_trip(&doc)?;
    }

    #[test]
    fn canonical_bytes_ignore_layout_and_key_order(doc in envelope(channel())) {
        // Reverse every object's key order and re-indent: still the same canonical bytes.
        fn reverse_keys(value: &Value) -> String {
            match value {
                Value::Object(map) => {
                    let fields: Vec<String> = map
                        .iter()
                        .rev()
                        .map(|(k, v)| format!("\n  {} :\t{}", Value::String(k.clone()), reverse_keys(v)))
                        .collect();
                    format!("{{{}\n}}", fields.join(","))
                }
                Value::Array(items) => format!("[ {} ]", items.iter().map(reverse_keys).collect::<Vec<_>>().join(" , ")),
                other => other.to_string(),
            }
        }
        let shuffled = reverse_keys(&serde_json::to_value(&doc).unwrap());
        let parsed = Signed::<ChannelStatement>::from_slice(shuffled.as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &doc);
        prop_assert_eq!(parsed.canonical_signed().unwrap(), doc.canonical_signed().unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// (b) signed documents verify after round trips, unknown fields included
// ---------------------------------------------------------------------------------------------

// Each case derives a key, signs once and verifies twice; ed25519 in an unoptimised test build
// costs milliseconds per operation, hence the lower case count (5 x 32 signed documents).
proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn signed_release_verifies_after_round_trip(body in release(), seed in seed()) {
        check_signed_round_trip(body, seed)?;
    }

    #[test]
    fn signed_release_with_unknown_fields_verifies(
        body in release_with(extra_fields(RELEASE_FIELDS, 1..5).prop_filter("unknown fields", |m| !m.is_empty()).boxed()),
        seed in seed(),
    ) {
        prop_assert!(!body.extra.is_empty());
        check_signed_round_trip(body, seed)?;
    }

    #[test]
    fn signed_channel_statement_with_unknown_fields_verifies(
        body in channel_with(extra_fields(CHANNEL_FIELDS, 1..5).prop_filter("unknown fields", |m| !m.is_empty()).boxed()),
        seed in seed(),
    ) {
        check_signed_round_trip(body, seed)?;
    }

    #[test]
    fn signed_rollback_with_unknown_fields_verifies(
        body in rollback_with(extra_fields(ROLLBACK_FIELDS, 1..5).prop_filter("unknown fields", |m| !m.is_empty()).boxed()),
        seed in seed(),
    ) {
        check_signed_round_trip(body, seed)?;
    }

    #[test]
    fn signed_root_with_unknown_fields_verifies(
        body in root_with(extra_fields(ROOT_FIELDS, 1..5).prop_filter("unknown fields", |m| !m.is_empty()).boxed()),
        seed in seed(),
    ) {
        check_signed_round_trip(body, seed)?;
    }
}

// ---------------------------------------------------------------------------------------------
// (c) any change breaks the signature
// ---------------------------------------------------------------------------------------------

// (The untampered documents verify: that is property (b).)
proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn flipping_a_byte_of_a_release_string_field_fails(
        body in release(),
        seed in seed(),
        field in 0..4usize,
        filler in nonempty_text(),
        index in any::<usize>(),
        mask in 1..=255u8,
    ) {
        let key = PrivateKey::from_seed("prop", &seed);
        let root = trust_root(&key);
        let mut body = body;
        if body.artifacts.is_empty() {
            body.artifacts.push(Artifact { platform: filler.clone(), sha256: "ab".repeat(32), size: 1, url: filler.clone(), mirrors: Vec::new(), deltas: Vec::new(), extra: BTreeMap::new() });
        }
        // Make sure the chosen field has a byte to flip.
        let target: &mut String = match field {
            0 => &mut body.product,
            1 => &mut body.notes,
            2 => &mut body.artifacts[0].platform,
            _ => &mut body.artifacts[0].url,
        };
        if target.is_empty() {
            target.clone_from(&filler);
        }
        let doc = Signed::sign(body, &[&key]).unwrap();
        let mut tampered = doc.clone();
        let target: &mut String = match field {
            0 => &mut tampered.signed.product,
            1 => &mut tampered.signed.notes,
            2 => &mut tampered.signed.artifacts[0].platform,
            _ => &mut tampered.signed.artifacts[0].url,
        };
        let flipped = flip_byte(target, index, mask);
        prop_assert_ne!(&flipped, &*target);
        *target = flipped;
        prop_assert_eq!(verify(&root, &tampered), Err(Reason::BadSignature));
        // And after the tampered document travels as JSON.
        let travelled = Signed::<Release>::from_slice(&tampered.to_json_pretty().unwrap()).unwrap();
        prop_assert_eq!(verify(&root, &travelled), Err(Reason::BadSignature));
    }

    #[test]
    fn flipping_a_byte_of_a_channel_string_field_fails(
        body in channel(),
        seed in seed(),
        salt_field in any::<bool>(),
        filler in nonempty_text(),
        index in any::<usize>(),
        mask in 1..=255u8,
    ) {
        let key = PrivateKey::from_seed("prop", &seed);
        let root = trust_root(&key);
        let mut body = body;
        for field in [&mut body.channel, &mut body.rollout.salt] {
            if field.is_empty() {
                field.clone_from(&filler);
            }
        }
        let doc = Signed::sign(body, &[&key]).unwrap();
        let mut tampered = doc.clone();
        let target = if salt_field { &mut tampered.signed.rollout.salt } else { &mut tampered.signed.channel };
        *target = flip_byte(target, index, mask);
        prop_assert_ne!(&tampered.signed, &doc.signed);
        prop_assert_eq!(verify(&root, &tampered), Err(Reason::BadSignature));
    }

    /// Any single-byte change to the canonical bytes of `signed` either no longer parses, spells
    /// the very same document differently (e.g. `\u001F` for `\u001f`), or fails verification.
    #[test]
    fn flipping_any_byte_of_the_canonical_signed_part_fails(
        body in rollback(),
        seed in seed(),
        index in any::<usize>(),
        mask in 1..=255u8,
    ) {
        let key = PrivateKey::from_seed("prop", &seed);
        let root = trust_root(&key);
        let doc = Signed::sign(body, &[&key]).unwrap();
        let canonical = doc.canonical_signed().unwrap();
        let mut mutated = canonical.clone();
        let index = index % mutated.len();
        mutated[index] ^= mask;

        let mut envelope = b"{\"signatures\":".to_vec();
        envelope.extend(serde_json::to_vec(&doc.signatures).unwrap());
        envelope.extend_from_slice(b",\"signed\":");
        envelope.extend_from_slice(&mutated);
        envelope.push(b'}');
        match Signed::<Rollback>::from_slice(&envelope) {
            Err(error) => prop_assert!(
                matches!(error.reason(), Reason::Malformed | Reason::WrongType),
                "unexpected parse error {error}"
            ),
            // Another spelling of the same canonical document: it is the signed document.
            Ok(parsed) if parsed.canonical_signed().unwrap() == canonical => {
                prop_assert_eq!(verify(&root, &parsed), Ok(()));
            }
            Ok(parsed) => prop_assert_eq!(verify(&root, &parsed), Err(Reason::BadSignature)),
        }
    }

    #[test]
    fn changing_any_signature_byte_fails(
        body in channel(),
        seed in seed(),
        index in 0..64usize,
        mask in 1..=255u8,
    ) {
        let key = PrivateKey::from_seed("prop", &seed);
        let root = trust_root(&key);
        let doc = Signed::sign(body, &[&key]).unwrap();
        let mut sig = hex::decode(&doc.signatures[0].sig).unwrap();
        sig[index] ^= mask;
        let mut tampered = doc.clone();
        tampered.signatures[0].sig = hex::encode(&sig);
        prop_assert_eq!(verify(&root, &tampered), Err(Reason::BadSignature));
    }

    #[test]
    fn changing_any_keyid_byte_fails(
        body in release(),
        seed in seed(),
        index in 0..32usize,
        mask in 1..=255u8,
    ) {
        let key = PrivateKey::from_seed("prop", &seed);
        let root = trust_root(&key);
        let doc = Signed::sign(body, &[&key]).unwrap();
        let mut keyid = hex::decode(&doc.signatures[0].keyid).unwrap();
        keyid[index] ^= mask;
        let mut tampered = doc.clone();
        tampered.signatures[0].keyid = hex::encode(&keyid);
        // The signature now names a key outside the role: it counts for nothing.
        prop_assert_eq!(verify(&root, &tampered), Err(Reason::Threshold));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) rollout cohorts
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn rollout_is_monotone_in_percent(worker in text(), salt in text(), p in 0..=100u8, q in 0..=100u8) {
        let (low, high) = if p <= q { (p, q) } else { (q, p) };
        if in_rollout(&worker, &salt, low) {
            prop_assert!(in_rollout(&worker, &salt, high), "in at {low} % but not at {high} %");
        }
    }

    #[test]
    fn rollout_membership_is_a_threshold_on_the_bucket(worker in text(), salt in text()) {
        let bucket = cohort_bucket(&worker, &salt);
        prop_assert!(bucket < 100);
        for percent in 0..=u8::MAX {
            let expected = u64::from(percent.min(100)) > bucket;
            prop_assert_eq!(in_rollout(&worker, &salt, percent), expected, "percent {}", percent);
        }
        prop_assert!(!in_rollout(&worker, &salt, 0), "0 % must be nobody");
        prop_assert!(in_rollout(&worker, &salt, 100), "100 % must be everybody");
    }
}

/// `count` pseudo-random worker ids (4 to 24 characters of `[a-z0-9-]`) from `seed` (splitmix64).
fn worker_ids(seed: u64, count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let len = 4 + (next() % 21) as usize;
            (0..len)
                .map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize]))
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(cases(8))]

    #[test]
    fn ten_percent_is_about_a_tenth_of_the_fleet(salt in text(), seed in any::<u64>()) {
        let ids = worker_ids(seed, 10_000);
        let inside = ids.iter().filter(|id| in_rollout(id, &salt, 10)).count();
        // Binomial(10000, 0.1): sd 30, so 800..=1200 is +-6.7 sd.
        prop_assert!((800..=1200).contains(&inside), "{} of 10000 at 10 %", inside);
        prop_assert!(ids[..1000].iter().all(|id| !in_rollout(id, &salt, 0)), "0 % must be nobody");
        prop_assert!(ids[..1000].iter().all(|id| in_rollout(id, &salt, 100)), "100 % must be everybody");
    }
}
