//! The signed release format of `worker-agent` fleets, shared by its producers (the
//! `worker-release` CLI, the update server) and its consumer (the agent).
//!
//! Every document is an envelope `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`
//! ([`Signed`]); signatures are ed25519 over `worker-release/v1/<type>` + NUL + the RFC 8785
//! canonical JSON of `signed`. Four document types:
//!
//! | type | signed by | what it says |
//! |---|---|---|
//! | [`Root`] | `root` role (offline) | which keys hold which role, with thresholds |
//! | [`Release`] | `release` role (offline) | one version's artifacts: platform, sha256, size, url |
//! | [`ChannelStatement`] | `channel` role (the update server) | which release a channel offers, to which share, until when |
//! | [`Rollback`] | `release` role (offline) | which versions may move down to which |
//!
//! The agent calls [`verify_update`] (or [`UpdateCheck::decide`]) on what the server sent and
//! gets a [`Decision`]; every rejection carries a stable [`Reason`]. Downloads are checked with
//! [`ArtifactVerifier`] while they stream.
//!
//! This crate does no network I/O, and no file I/O but reading the files its caller names (key
//! files, documents, artifacts) and writing the key files `keygen` creates.
#![deny(missing_docs)]

mod artifact;
mod delta;
mod doc_type;
mod documents;
mod error;
mod failure;
mod keys;
mod role;
mod root;
mod signed;
mod time;
mod timestamp;
mod verify;

pub use artifact::{hash_file, verify_file, ArtifactVerifier};
pub use delta::{apply_patch, make_patch, DeltaError, PATCH_LEVEL};
pub use doc_type::DocType;
pub use documents::{
    Artifact, ChannelStatement, Delta, Release, ReleasePointer, Rollback, Rollout, Wave,
    MAX_WAVE_WORKERS, PRODUCT,
};
pub use error::{Error, Reason, Result};
pub use failure::FailureReason;
pub use keys::{
    check_secret_file, is_encrypted_key_file, keyid_of, read_secret_file, PrivateKey,
    PublicKeyFile, ENCRYPTED_KEY_HEADER, SCHEME_ED25519,
};
pub use role::{Key, Role};
pub use root::{
    follow_root_chain, role_changes, verify_rotation, weakening, RoleChange, RoleName, Roles, Root,
};
pub use signed::{canonical_json, Document, Signature, Signed, CONTEXT_PREFIX, MAX_EXACT_INTEGER};
pub use time::parse_duration_secs;
pub use timestamp::{ExpirationEnforcement, Timestamp};
pub use verify::{
    cohort_bucket, in_rollout, verify_update, AcceptedStatement, Decision, Idle, InstallPlan,
    LocalState, UpdateCheck,
};

pub use semver::Version;

/// The target triple this crate was built for (the platform an agent asks artifacts for).
pub const BUILD_PLATFORM: &str = env!("BUILD_TARGET");

/// The `--version` text of a binary built with `scripts/build_info.rs`:
/// `VERSION (commit SHA, built DATE, TARGET)`. Expands in the calling crate, so it reports that
/// crate's build (and `WORKER_AGENT_VERSION` for the agent).
#[macro_export]
macro_rules! long_version {
    () => {
        concat!(
            env!("BUILD_VERSION"),
            " (commit ",
            env!("BUILD_COMMIT"),
            ", built ",
            env!("BUILD_DATE"),
            ", ",
            env!("BUILD_TARGET"),
            ")"
        )
    };
}
