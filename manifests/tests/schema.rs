//! The JSON Schemas in `manifests/schema/` and the example set in `manifests/examples/` are
//! generated: the schemas from the Rust types (`schemars::schema_for!`), the examples from fixed
//! seeds and timestamps by [`generate_examples`]. These tests prove that both are current, that
//! the examples verify with the example keys, that they validate against the schemas, and that
//! schema and parser agree on what a document must contain.
//!
//! After changing a type or the generator, rewrite the files with
//! `UPDATE_SCHEMAS=1 UPDATE_EXAMPLES=1 cargo test -p manifests --test schema`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use jsonschema::Validator;
use manifests::{
    follow_root_chain, verify_file, verify_rotation, verify_update, Artifact, ChannelStatement,
    Decision, DocType, Document, ExpirationEnforcement, Key, LocalState, PrivateKey, PublicKeyFile,
    Reason, Release, ReleasePointer, Role, RoleName, Roles, Rollback, Rollout, Root, Signed,
    Timestamp, Version, PRODUCT,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// The example set: keys, timestamps, contents.

/// An example key: its name and the byte its 32-byte seed repeats. These keys are public
/// knowledge (see `manifests/examples/README.md`); no real fleet may ever trust them.
type ExampleKey = (&'static str, u8);

const ROOT_KEY: ExampleKey = ("example-root", 1);
const ROOT_2_KEY: ExampleKey = ("example-root-2", 2);
const RELEASE_KEY: ExampleKey = ("example-release", 3);
const CHANNEL_KEY: ExampleKey = ("example-channel", 4);
const EXAMPLE_KEYS: [ExampleKey; 4] = [ROOT_KEY, ROOT_2_KEY, RELEASE_KEY, CHANNEL_KEY];

/// When every example document was issued.
const ISSUED_AT: &str = "2026-01-01T00:00:00Z";
/// Both example roots expire at this instant.
const ROOT_EXPIRES: &str = "2036-01-01T00:00:00Z";
/// The channel statement lives 24 h, the rollback directive 30 days.
const CHANNEL_LIFETIME_SECS: i64 = 24 * 3600;
const ROLLBACK_LIFETIME_SECS: i64 = 30 * 24 * 3600;
/// The instant the examples are verified at: inside every document's validity.
const VERIFIED_AT: &str = "2026-01-01T12:00:00Z";

const PLATFORM: &str = "x86_64-unknown-linux-gnu";
const ARTIFACT: &[u8] = b"example worker-agent artifact\n";
const CHANNEL: &str = "stable";

fn private_key((name, seed): ExampleKey) -> PrivateKey {
    PrivateKey::from_seed(name, &[seed; 32])
}

fn timestamp(text: &str) -> Timestamp {
    text.parse().expect("fixed timestamps are canonical")
}

fn version(text: &str) -> Version {
    text.parse().expect("fixed versions are valid semver")
}

fn root_key_entry(key: &PrivateKey) -> Key {
    let public = key.public();
    Key {
        scheme: public.scheme,
        public: public.public,
        extra: BTreeMap::new(),
    }
}

/// A root whose `root` role is `root_key` alone, with the example release and channel keys,
/// signed by `signers`.
fn example_root(version: u64, root_key: &PrivateKey, signers: &[&PrivateKey]) -> Signed<Root> {
    let release = private_key(RELEASE_KEY);
    let channel = private_key(CHANNEL_KEY);
    let keys = [root_key, &release, &channel]
        .into_iter()
        .map(|key| (key.keyid(), root_key_entry(key)))
        .collect();
    let root = Root {
        doc_type: DocType::Root,
        version,
        expires: timestamp(ROOT_EXPIRES),
        keys,
        roles: Roles {
            root: Role::new(vec![root_key.keyid()], 1),
            release: Role::new(vec![release.keyid()], 1),
            channel: Role::new(vec![channel.keyid()], 1),
            extra: BTreeMap::new(),
        },
        extra: BTreeMap::new(),
    };
    Signed::sign(root, signers).expect("sign root")
}

fn example_release() -> Signed<Release> {
    let sha256 = hex::encode(Sha256::digest(ARTIFACT));
    let release = Release {
        doc_type: DocType::Release,
        product: PRODUCT.to_owned(),
        version: version("1.1.0"),
        released_at: timestamp(ISSUED_AT),
        minimum_version: version("1.0.0"),
        artifacts: vec![Artifact {
            platform: PLATFORM.to_owned(),
            url: format!("/api/worker-updates/artifacts/{sha256}"),
            sha256,
            size: ARTIFACT.len() as u64,
            mirrors: Vec::new(),
            deltas: Vec::new(),
            extra: BTreeMap::new(),
        }],
        notes: "Example release: the artifact is a text file, not a real build.".to_owned(),
        extra: BTreeMap::new(),
    };
    Signed::sign(release, &[&private_key(RELEASE_KEY)]).expect("sign release")
}

fn example_channel(release: &Signed<Release>) -> Signed<ChannelStatement> {
    let issued_at = timestamp(ISSUED_AT);
    let statement = ChannelStatement {
        doc_type: DocType::Channel,
        channel: CHANNEL.to_owned(),
        serial: 1,
        issued_at,
        expires: issued_at.plus_secs(CHANNEL_LIFETIME_SECS),
        release: ReleasePointer {
            version: release.signed.version.clone(),
            manifest_sha256: release.signed_sha256().expect("hash release"),
            extra: BTreeMap::new(),
        },
        rollout: Rollout {
            percent: 100,
            salt: "worker-agent-1.1.0".to_owned(),
            wave: None,
            extra: BTreeMap::new(),
        },
        minimum_version: version("1.0.0"),
        recommended_version: version("1.1.0"),
        halted: false,
        urgent: false,
        extra: BTreeMap::new(),
    };
    Signed::sign(statement, &[&private_key(CHANNEL_KEY)]).expect("sign channel statement")
}

fn example_rollback() -> Signed<Rollback> {
    let issued_at = timestamp(ISSUED_AT);
    let rollback = Rollback {
        doc_type: DocType::Rollback,
        product: PRODUCT.to_owned(),
        from: vec![version("1.1.0")],
        to: version("1.0.0"),
        issued_at,
        expires: issued_at.plus_secs(ROLLBACK_LIFETIME_SECS),
        reason: "Example directive: agents on 1.1.0 may return to 1.0.0.".to_owned(),
        extra: BTreeMap::new(),
    };
    Signed::sign(rollback, &[&private_key(RELEASE_KEY)]).expect("sign rollback directive")
}

fn pretty_json<S: Serialize>(value: &S) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("serialise JSON");
    out.push(b'\n');
    out
}

/// Every generated file of `manifests/examples/`, by path relative to it. Deterministic: fixed
/// seeds, fixed timestamps, deterministic ed25519 signatures.
fn generate_examples() -> BTreeMap<String, Vec<u8>> {
    let root_1 = private_key(ROOT_KEY);
    let root_2 = private_key(ROOT_2_KEY);
    let release = example_release();
    let documents = [
        (
            "root.json",
            example_root(1, &root_1, &[&root_1]).to_json_pretty(),
        ),
        (
            "root-2.json",
            example_root(2, &root_2, &[&root_1, &root_2]).to_json_pretty(),
        ),
        ("channel.json", example_channel(&release).to_json_pretty()),
        ("release.json", release.to_json_pretty()),
        ("rollback.json", example_rollback().to_json_pretty()),
    ];
    let mut files: BTreeMap<String, Vec<u8>> = documents
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), bytes.expect("serialise example")))
        .collect();
    files.insert("artifact.bin".to_owned(), ARTIFACT.to_vec());
    for example_key in EXAMPLE_KEYS {
        let key = private_key(example_key);
        files.insert(
            format!("keys/{}.pub", key.name()),
            pretty_json(&key.public()),
        );
    }
    files
}

/// Every schema of `manifests/schema/`, generated from the Rust types.
fn generate_schemas() -> BTreeMap<String, Vec<u8>> {
    [
        ("root.schema.json", schemars::schema_for!(Signed<Root>)),
        (
            "release.schema.json",
            schemars::schema_for!(Signed<Release>),
        ),
        (
            "channel.schema.json",
            schemars::schema_for!(Signed<ChannelStatement>),
        ),
        (
            "rollback.schema.json",
            schemars::schema_for!(Signed<Rollback>),
        ),
    ]
    .into_iter()
    .map(|(name, schema)| (name.to_owned(), pretty_json(&schema)))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// The committed files, and the UPDATE_* switches that rewrite them.

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_dir() -> PathBuf {
    crate_dir().join("schema")
}

fn examples_dir() -> PathBuf {
    crate_dir().join("examples")
}

fn update_requested(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|value| value == "1")
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        let path = dir.join(name);
        let parent = path.parent().expect("generated files live in a directory");
        fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

static UPDATE: Once = Once::new();

/// Rewrites the files `UPDATE_SCHEMAS=1` and `UPDATE_EXAMPLES=1` ask for, once per test run and
/// before any test reads them (tests run in parallel).
fn apply_requested_updates() {
    UPDATE.call_once(|| {
        if update_requested("UPDATE_SCHEMAS") {
            write_files(&schema_dir(), &generate_schemas());
        }
        if update_requested("UPDATE_EXAMPLES") {
            write_files(&examples_dir(), &generate_examples());
        }
    });
}

fn read_committed(path: &Path) -> Vec<u8> {
    apply_requested_updates();
    fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with UPDATE_SCHEMAS=1 UPDATE_EXAMPLES=1 cargo test -p manifests --test schema",
            path.display()
        )
    })
}

fn read_example(name: &str) -> Vec<u8> {
    read_committed(&examples_dir().join(name))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&read_committed(path))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// Fails unless every generated file equals the committed one.
fn assert_committed(dir: &Path, generated: &BTreeMap<String, Vec<u8>>, switch: &str) {
    for (name, bytes) in generated {
        let path = dir.join(name);
        assert!(
            read_committed(&path) == *bytes,
            "{} differs from what the generator produces now; if the change is intended, run \
             {switch}=1 cargo test -p manifests --test schema and review the diff",
            path.display()
        );
    }
}

/// The paths of all files under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries =
            fs::read_dir(&current).unwrap_or_else(|e| panic!("list {}: {e}", current.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .expect("entry lies under its directory");
                found.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The four document kinds: which example, which schema, which parser.

struct Kind {
    example: &'static str,
    schema: &'static str,
    /// `Signed::<T>::from_slice` for the kind's `T`, with the error as text.
    parse: fn(&[u8]) -> Result<(), String>,
}

fn parses<T: Document>(bytes: &[u8]) -> Result<(), String> {
    Signed::<T>::from_slice(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

const KINDS: [Kind; 5] = [
    Kind {
        example: "root.json",
        schema: "root.schema.json",
        parse: parses::<Root>,
    },
    Kind {
        example: "root-2.json",
        schema: "root.schema.json",
        parse: parses::<Root>,
    },
    Kind {
        example: "release.json",
        schema: "release.schema.json",
        parse: parses::<Release>,
    },
    Kind {
        example: "channel.json",
        schema: "channel.schema.json",
        parse: parses::<ChannelStatement>,
    },
    Kind {
        example: "rollback.json",
        schema: "rollback.schema.json",
        parse: parses::<Rollback>,
    },
];

impl Kind {
    fn schema_json(&self) -> Value {
        read_json(&schema_dir().join(self.schema))
    }

    fn validator(&self) -> Validator {
        jsonschema::validator_for(&self.schema_json())
            .unwrap_or_else(|e| panic!("{}: not a usable schema: {e}", self.schema))
    }

    fn example_json(&self) -> Value {
        read_json(&examples_dir().join(self.example))
    }

    /// Asserts that both the schema and the Rust parser refuse `document`.
    fn assert_both_refuse(&self, validator: &Validator, document: &Value, what: &str) {
        let bytes = serde_json::to_vec(document).expect("serialise JSON");
        assert!(
            !validator.is_valid(document),
            "{}: the schema accepts {what}",
            self.example
        );
        assert!(
            (self.parse)(&bytes).is_err(),
            "{}: the parser accepts {what}",
            self.example
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The examples verify.

fn local_state(current_version: &str) -> LocalState {
    LocalState {
        product: PRODUCT.to_owned(),
        platform: PLATFORM.to_owned(),
        worker_id: "example-worker".to_owned(),
        channel: CHANNEL.to_owned(),
        current_version: version(current_version),
        accepted_serial: None,
        accepted_statement_sha256: None,
        quarantined: BTreeSet::new(),
    }
}

fn load_public_key(example_key: ExampleKey) -> PublicKeyFile {
    let path = examples_dir().join(format!("keys/{}.pub", example_key.0));
    apply_requested_updates();
    PublicKeyFile::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that `root` gives `role` exactly the committed public key `example_key`.
fn assert_role_key(root: &Root, role: RoleName, example_key: ExampleKey) {
    let public = load_public_key(example_key);
    assert_eq!(
        root.role(role).keyids,
        vec![public.keyid.clone()],
        "root v{} role {}",
        root.version,
        role.as_str()
    );
    let key = root.keys.get(&public.keyid).expect("role key is defined");
    assert_eq!((&key.scheme, &key.public), (&public.scheme, &public.public));
}

#[test]
fn examples_verify_with_the_example_keys() {
    let now = timestamp(VERIFIED_AT);
    let safe = ExpirationEnforcement::Safe;

    let root_doc =
        Signed::<Root>::from_slice(&read_example("root.json")).expect("root.json parses");
    let root = root_doc
        .verify_self(now, safe)
        .expect("root.json is self-signed");
    assert_eq!(root.version, 1);
    assert_role_key(&root, RoleName::Root, ROOT_KEY);
    assert_role_key(&root, RoleName::Release, RELEASE_KEY);
    assert_role_key(&root, RoleName::Channel, CHANNEL_KEY);

    let root_2_doc =
        Signed::<Root>::from_slice(&read_example("root-2.json")).expect("root-2.json parses");
    let root_2 = verify_rotation(&root, &root_2_doc).expect("root-2.json rotates root.json");
    assert_eq!(root_2.version, 2);
    assert_role_key(&root_2, RoleName::Root, ROOT_2_KEY);
    assert_role_key(&root_2, RoleName::Release, RELEASE_KEY);
    assert_role_key(&root_2, RoleName::Channel, CHANNEL_KEY);
    let current = follow_root_chain(&root, &[root_2_doc], now, safe).expect("root chain");
    assert_eq!(current, root_2);

    let release =
        Signed::<Release>::from_slice(&read_example("release.json")).expect("release.json parses");
    let rollback = Signed::<Rollback>::from_slice(&read_example("rollback.json"))
        .expect("rollback.json parses");
    let channel = Signed::<ChannelStatement>::from_slice(&read_example("channel.json"))
        .expect("channel.json parses");
    for trusted in [&root, &current] {
        trusted
            .verify_signed(RoleName::Release, &release)
            .expect("release.json is signed by the release role");
        trusted
            .verify_signed(RoleName::Release, &rollback)
            .expect("rollback.json is signed by the release role");
        trusted
            .verify_signed(RoleName::Channel, &channel)
            .expect("channel.json is signed by the channel role");
    }
    release
        .signed
        .validate()
        .expect("release.json is well-formed");
    assert_eq!(
        channel.signed.release.manifest_sha256,
        release.signed_sha256().expect("hash release"),
        "channel.json pins release.json"
    );
    assert_eq!(rollback.signed.from, vec![version("1.1.0")]);
    assert_eq!(rollback.signed.to, version("1.0.0"));
    assert!(now < rollback.signed.expires);

    let artifact = release
        .signed
        .artifact_for(PLATFORM)
        .expect("release.json has an artifact for the example platform");
    assert_eq!(
        artifact.url,
        format!("/api/worker-updates/artifacts/{}", artifact.sha256)
    );
    verify_file(&examples_dir().join("artifact.bin"), artifact)
        .expect("artifact.bin matches its signed hash and size");

    match verify_update(&current, &channel, &release, &local_state("1.0.0"), now) {
        Decision::Install { plan, statement } => {
            assert_eq!(plan.version, version("1.1.0"));
            assert_eq!(&plan.artifact, artifact);
            assert!(!plan.is_rollback);
            assert_eq!(statement.serial, 1);
        }
        other => panic!("expected Install, got {other:?}"),
    }
    let expired = channel.signed.expires;
    assert_eq!(
        expired,
        timestamp(ISSUED_AT).plus_secs(CHANNEL_LIFETIME_SECS)
    );
    let decision = verify_update(&current, &channel, &release, &local_state("1.0.0"), expired);
    assert_eq!(decision.reason(), Some(Reason::Expired));
}

// ---------------------------------------------------------------------------------------------
// (b), (c) The committed files are what the generators produce now.

#[test]
fn schemas_are_generated_from_the_rust_types() {
    assert_committed(&schema_dir(), &generate_schemas(), "UPDATE_SCHEMAS");
    for kind in &KINDS {
        let schema = kind.schema_json();
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{}",
            kind.schema
        );
        jsonschema::meta::validate(&schema)
            .unwrap_or_else(|e| panic!("{}: not a valid JSON Schema: {e}", kind.schema));
    }
}

#[test]
fn examples_are_generated_from_the_fixed_seeds() {
    let generated = generate_examples();
    assert_committed(&examples_dir(), &generated, "UPDATE_EXAMPLES");

    // Nothing else lives there: in particular no private key file.
    let mut expected: BTreeSet<String> = generated.into_keys().collect();
    expected.insert("README.md".to_owned());
    assert_eq!(files_under(&examples_dir()), expected);

    let readme = String::from_utf8(read_example("README.md")).expect("README.md is UTF-8");
    for (name, seed) in EXAMPLE_KEYS {
        for needle in [format!("`{name}`"), format!("`[{seed}u8; 32]`")] {
            assert!(
                readme.contains(&needle),
                "README.md does not document {needle}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (d) The examples validate against their schemas.

#[test]
fn examples_validate_against_their_schemas() {
    for kind in &KINDS {
        let validator = kind.validator();
        let example = kind.example_json();
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not validate against {}: {errors:#?}",
            kind.example,
            kind.schema
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (e) Schema and parser agree on what a document must contain.

/// One way of breaking a valid document.
enum Mutation {
    /// Delete the required property `name` of the object at `parent`.
    Remove { parent: String, name: String },
    /// Replace the value at `at` with `with`, of a JSON type the schema does not allow there.
    Retype { at: String, with: Value },
}

impl Mutation {
    fn describe(&self) -> String {
        match self {
            Mutation::Remove { parent, name } => format!("{parent} without {name:?}"),
            Mutation::Retype { at, with } => format!("{at} = {with}"),
        }
    }

    fn apply(&self, document: &Value) -> Value {
        let mut broken = document.clone();
        match self {
            Mutation::Remove { parent, name } => {
                broken
                    .pointer_mut(parent)
                    .and_then(Value::as_object_mut)
                    .and_then(|object| object.remove(name))
                    .unwrap_or_else(|| panic!("{parent}/{name} is in the example"));
            }
            Mutation::Retype { at, with } => {
                *broken
                    .pointer_mut(at)
                    .unwrap_or_else(|| panic!("{at} is in the example")) = with.clone();
            }
        }
        broken
    }
}

/// Follows local `$ref`s (`#/$defs/...`) to the schema they name.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {reference}"));
        schema = root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling $ref {reference}"));
    }
    schema
}

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether `value` is an instance of the JSON Schema type `name`.
fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// The JSON types `schema` allows: its `type`, or the union of its `oneOf` / `anyOf` branches'
/// types. `None` when it does not restrict the type.
fn allowed_types<'a>(root: &'a Value, schema: &'a Value) -> Option<BTreeSet<&'a str>> {
    let schema = resolve(root, schema);
    match schema.get("type") {
        Some(Value::String(name)) => return Some(BTreeSet::from([name.as_str()])),
        Some(Value::Array(names)) => return Some(names.iter().filter_map(Value::as_str).collect()),
        _ => {}
    }
    let branches = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    let mut union = BTreeSet::new();
    for branch in branches {
        union.extend(allowed_types(root, branch)?);
    }
    Some(union)
}

/// A value of none of the types `schema` allows, if it restricts the type.
fn wrong_typed_value(root: &Value, schema: &Value) -> Option<Value> {
    let allowed = allowed_types(root, schema)?;
    let candidates = [
        json!("1"),
        json!(1),
        json!(true),
        json!([]),
        json!({}),
        json!(null),
    ];
    candidates
        .into_iter()
        .find(|candidate| !allowed.iter().any(|name| has_type(candidate, name)))
}

/// Collects, for `instance` at `pointer` and everything inside it, the deletion of each required
/// property and the replacement of each typed value by one of another JSON type.
fn collect_mutations(
    root: &Value,
    schema: &Value,
    instance: &Value,
    pointer: &str,
    out: &mut Vec<Mutation>,
) {
    let schema = resolve(root, schema);
    match instance {
        Value::Object(object) => {
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten() {
                out.push(Mutation::Remove {
                    parent: pointer.to_owned(),
                    name: name
                        .as_str()
                        .expect("required names are strings")
                        .to_owned(),
                });
            }
            for (key, value) in object {
                let declared = schema.get("properties").and_then(|p| p.get(key));
                let extra = schema.get("additionalProperties").filter(|s| s.is_object());
                if let Some(child) = declared.or(extra) {
                    let at = format!("{pointer}/{}", pointer_token(key));
                    visit_child(root, child, value, at, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    visit_child(root, child, item, format!("{pointer}/{index}"), out);
                }
            }
        }
        _ => {}
    }
}

fn visit_child(root: &Value, schema: &Value, value: &Value, at: String, out: &mut Vec<Mutation>) {
    if let Some(with) = wrong_typed_value(root, schema) {
        out.push(Mutation::Retype {
            at: at.clone(),
            with,
        });
    }
    collect_mutations(root, schema, value, &at, out);
}

#[test]
fn schema_and_parser_both_refuse_missing_required_properties_and_wrong_types() {
    for kind in &KINDS {
        let schema = kind.schema_json();
        let validator = kind.validator();
        let example = kind.example_json();
        let mut mutations = Vec::new();
        collect_mutations(&schema, &schema, &example, "", &mut mutations);

        // The walk must reach every required property of `signed` (and of the envelope).
        let signed_schema = resolve(&schema, &schema["properties"]["signed"]);
        let signed_required: BTreeSet<&str> = signed_schema["required"]
            .as_array()
            .expect("`signed` has required properties")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let removed: BTreeSet<&str> = mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::Remove { parent, name } if parent == "/signed" => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(removed, signed_required, "{}", kind.example);
        let fields_of_signed = example["signed"]
            .as_object()
            .expect("`signed` is an object")
            .len();
        assert_eq!(
            signed_required.len(),
            fields_of_signed,
            "{}: every field of the example's `signed` is required",
            kind.example
        );
        let retyped: BTreeSet<&str> = mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::Retype { at, .. } => at.strip_prefix("/signed/"),
                _ => None,
            })
            .filter(|rest| !rest.contains('/'))
            .collect();
        assert_eq!(
            retyped, signed_required,
            "{}: every field of `signed` has a typed schema",
            kind.example
        );

        for mutation in &mutations {
            let broken = mutation.apply(&example);
            kind.assert_both_refuse(&validator, &broken, &mutation.describe());
        }
    }
}

#[test]
fn schema_and_parser_both_refuse_malformed_values() {
    let cases: [(&str, &str, Value); 8] = [
        (
            "release.json",
            "/signed/released_at",
            json!("2026-01-01 00:00:00Z"),
        ),
        (
            "release.json",
            "/signed/released_at",
            json!("2026-01-01T00:00:00.000Z"),
        ),
        ("release.json", "/signed/version", json!("1.1")),
        ("release.json", "/signed/artifacts/0/size", json!(-1)),
        ("channel.json", "/signed/serial", json!(-1)),
        ("channel.json", "/signed/serial", json!(1.5)),
        ("channel.json", "/signed/type", json!("Channel")),
        ("rollback.json", "/signed/from/0", json!("v1.1.0")),
    ];
    for (example, at, value) in cases {
        let kind = KINDS
            .iter()
            .find(|kind| kind.example == example)
            .expect("known example");
        let mutation = Mutation::Retype {
            at: at.to_owned(),
            with: value,
        };
        let broken = mutation.apply(&kind.example_json());
        kind.assert_both_refuse(&kind.validator(), &broken, &mutation.describe());
    }

    // The envelope and signatures admit no unknown field (unlike `signed`, which keeps them).
    for kind in &KINDS {
        let validator = kind.validator();
        let mut envelope = kind.example_json();
        envelope["comment"] = json!("not part of the format");
        kind.assert_both_refuse(&validator, &envelope, "an unknown envelope field");
        let mut signature = kind.example_json();
        signature["signatures"][0]["comment"] = json!("not part of the format");
        kind.assert_both_refuse(&validator, &signature, "an unknown signature field");
    }
}

#[test]
fn schema_and_parser_both_accept_unknown_fields_in_signed() {
    for kind in &KINDS {
        let mut document = kind.example_json();
        document["signed"]["x-comment"] = json!("added by a newer format version");
        let bytes = serde_json::to_vec(&document).expect("serialise JSON");
        assert!(kind.validator().is_valid(&document), "{}", kind.example);
        (kind.parse)(&bytes).unwrap_or_else(|e| panic!("{}: {e}", kind.example));
    }
}

/// Documents the parser refuses must be refused by the schema too: a `type` tag of another
/// document (each schema pins its tag with `const`), and impossible months, days and hours.
#[test]
fn schema_refuses_what_the_parser_refuses() {
    let wrong_types = [
        ("root.json", "release"),
        ("release.json", "channel"),
        ("channel.json", "rollback"),
        ("rollback.json", "release"),
    ];
    let mut cases: Vec<(&str, &str, Value)> = wrong_types
        .into_iter()
        .map(|(example, tag)| (example, "/signed/type", json!(tag)))
        .collect();
    for impossible in [
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
    ] {
        cases.push(("rollback.json", "/signed/expires", json!(impossible)));
    }
    for (example, at, value) in cases {
        let kind = KINDS
            .iter()
            .find(|kind| kind.example == example)
            .expect("known example");
        let mutation = Mutation::Retype {
            at: at.to_owned(),
            with: value,
        };
        let broken = mutation.apply(&kind.example_json());
        kind.assert_both_refuse(&kind.validator(), &broken, &mutation.describe());
    }
}
