//! The one error type of the crate. Every variant carries what failed (a path, a key id, a
//! version, a channel) and maps to a stable [`Reason`], the label the agent puts on its
//! `worker_update_failure_total{reason}` metric and in its reports to the update server.

use std::path::PathBuf;

use semver::Version;

use crate::timestamp::Timestamp;

/// A stable, machine-readable name for why something was rejected.
///
/// The strings returned by [`Reason::as_str`] are a contract: dashboards, alert rules and the
/// update server's audit trail key on them. Add variants; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// Not valid JSON, a missing field, a bad hex string, a bad version or timestamp.
    Malformed,
    /// The document's `type` is not the one expected here.
    WrongType,
    /// A key uses a signature scheme other than `ed25519`.
    UnknownScheme,
    /// A role in the root lists no keys, a zero threshold, or a key the root does not define.
    InvalidRoot,
    /// The document carries no signature at all.
    Unsigned,
    /// Two signatures claim the same key id.
    DuplicateKeyid,
    /// A signature by an authorised key does not verify: the document was tampered with.
    BadSignature,
    /// Fewer distinct authorised keys signed than the role's threshold.
    Threshold,
    /// The document's `expires` is in the past (freeze attack).
    Expired,
    /// A root rotation skipped or repeated a version.
    RootVersion,
    /// A channel statement older than (or conflicting with) one already accepted (replay attack).
    ReplayedSerial,
    /// The channel statement is for another channel than the agent's.
    WrongChannel,
    /// The release manifest is not the one the channel statement pins.
    ManifestMismatch,
    /// The release is older than the running version and no valid rollback directive allows it.
    Downgrade,
    /// The release is for another product.
    WrongProduct,
    /// The release has no artifact for this platform.
    WrongPlatform,
    /// The release requires a newer starting version: the agent must update to an intermediate
    /// release first.
    NeedsHop,
    /// The artifact's SHA-256 is not the signed one.
    HashMismatch,
    /// The artifact is shorter or longer than the signed size.
    SizeMismatch,
    /// A private key file is readable by group or others.
    KeyPermissions,
    /// A passphrase-encrypted private key where only a plain one is usable (the update
    /// server's online channel key).
    KeyEncrypted,
    /// Reading a file the caller named failed.
    Io,
}

impl Reason {
    /// The stable label, e.g. `"bad_signature"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::WrongType => "wrong_type",
            Reason::UnknownScheme => "unknown_scheme",
            Reason::InvalidRoot => "invalid_root",
            Reason::Unsigned => "unsigned",
            Reason::DuplicateKeyid => "duplicate_keyid",
            Reason::BadSignature => "bad_signature",
            Reason::Threshold => "threshold",
            Reason::Expired => "expired",
            Reason::RootVersion => "root_version",
            Reason::ReplayedSerial => "replayed_serial",
            Reason::WrongChannel => "wrong_channel",
            Reason::ManifestMismatch => "manifest_mismatch",
            Reason::Downgrade => "downgrade",
            Reason::WrongProduct => "wrong_product",
            Reason::WrongPlatform => "wrong_platform",
            Reason::NeedsHop => "needs_hop",
            Reason::HashMismatch => "hash_mismatch",
            Reason::SizeMismatch => "size_mismatch",
            Reason::KeyPermissions => "key_permissions",
            Reason::KeyEncrypted => "key_encrypted",
            Reason::Io => "io",
        }
    }

    /// Every reason, for metric pre-registration and documentation tests.
    pub const ALL: &'static [Reason] = &[
        Reason::Malformed,
        Reason::WrongType,
        Reason::UnknownScheme,
        Reason::InvalidRoot,
        Reason::Unsigned,
        Reason::DuplicateKeyid,
        Reason::BadSignature,
        Reason::Threshold,
        Reason::Expired,
        Reason::RootVersion,
        Reason::ReplayedSerial,
        Reason::WrongChannel,
        Reason::ManifestMismatch,
        Reason::Downgrade,
        Reason::WrongProduct,
        Reason::WrongPlatform,
        Reason::NeedsHop,
        Reason::HashMismatch,
        Reason::SizeMismatch,
        Reason::KeyPermissions,
        Reason::KeyEncrypted,
        Reason::Io,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong parsing, signing or verifying a document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed document of the expected shape.
    #[error("malformed {what}: {source}")]
    Json {
        /// What was being parsed (a document type or a file path).
        what: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A field holds a value outside its allowed form.
    #[error("malformed {field}: {problem}")]
    Malformed {
        /// The field, e.g. `signatures[0].sig` or `keys.<id>.public`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The `type` field does not match the document type expected.
    #[error("expected a {expected} document, found type {found:?}")]
    WrongType {
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A key declares a scheme this crate does not implement.
    #[error("key {keyid} uses unknown scheme {scheme:?} (only \"ed25519\" is supported)")]
    UnknownScheme {
        /// The key.
        keyid: String,
        /// The scheme it declares.
        scheme: String,
    },
    /// The root document's role definitions are unusable.
    #[error("invalid root role {role:?}: {problem}")]
    InvalidRoot {
        /// The role (`root`, `release` or `channel`).
        role: String,
        /// What is wrong.
        problem: String,
    },
    /// The document has an empty `signatures` list.
    #[error("{doc} document carries no signatures")]
    Unsigned {
        /// The document type.
        doc: &'static str,
    },
    /// Two signatures name the same key id.
    #[error("{doc} document has two signatures with key id {keyid}")]
    DuplicateKeyid {
        /// The document type.
        doc: &'static str,
        /// The repeated key id.
        keyid: String,
    },
    /// A signature by a key authorised for the role does not verify.
    #[error("{doc} document: signature by {role} key {keyid} does not verify (document altered or signature forged)")]
    BadSignature {
        /// The document type.
        doc: &'static str,
        /// The role whose key it is.
        role: String,
        /// The key id.
        keyid: String,
    },
    /// Not enough distinct authorised keys signed.
    #[error("{doc} document: {valid} valid signature(s) by distinct {role} keys, threshold is {threshold}")]
    Threshold {
        /// The document type.
        doc: &'static str,
        /// The role.
        role: String,
        /// Distinct authorised keys whose signatures verified.
        valid: usize,
        /// The threshold required.
        threshold: u32,
    },
    /// The document expired.
    #[error("{doc} document expired at {expires} (now {now})")]
    Expired {
        /// The document type.
        doc: &'static str,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A root rotation is not to the next version.
    #[error("root rotation from version {trusted} must be to version {expected}, found {found}")]
    RootVersion {
        /// The trusted root's version.
        trusted: u64,
        /// The only acceptable next version.
        expected: u64,
        /// The version offered.
        found: u64,
    },
    /// The channel statement's serial goes backwards, or repeats with other content.
    #[error("channel {channel:?}: statement serial {offered} is a replay (already accepted serial {accepted})")]
    ReplayedSerial {
        /// The channel.
        channel: String,
        /// The highest serial already accepted.
        accepted: u64,
        /// The serial offered.
        offered: u64,
    },
    /// The statement is for another channel.
    #[error("channel statement is for channel {offered:?}, this agent follows {expected:?}")]
    WrongChannel {
        /// The agent's channel.
        expected: String,
        /// The statement's channel.
        offered: String,
    },
    /// The release manifest is not the one pinned by the channel statement.
    #[error("release manifest {actual} (version {version}) is not the one the channel pins ({expected})")]
    ManifestMismatch {
        /// The `manifest_sha256` (and version) in the channel statement.
        expected: String,
        /// The hash of the release offered.
        actual: String,
        /// The release's version.
        version: Version,
    },
    /// Moving to a lower version without a valid rollback directive.
    #[error("refusing downgrade from {current} to {offered}: {why}")]
    Downgrade {
        /// The running version.
        current: Version,
        /// The version offered.
        offered: Version,
        /// Why no rollback directive allows it.
        why: String,
    },
    /// The release is for another product.
    #[error("release is for product {offered:?}, expected {expected:?}")]
    WrongProduct {
        /// The product this agent is.
        expected: String,
        /// The release's product.
        offered: String,
    },
    /// No artifact for this platform.
    #[error("release {version} has no artifact for platform {platform} (it has: {available})")]
    WrongPlatform {
        /// The release version.
        version: Version,
        /// The agent's platform.
        platform: String,
        /// The platforms the release has.
        available: String,
    },
    /// The agent is older than the release's `minimum_version`.
    #[error("release {offered} requires at least {minimum} to update straight to it; running {current} must hop through an intermediate release")]
    NeedsHop {
        /// The running version.
        current: Version,
        /// The release's minimum version.
        minimum: Version,
        /// The release version.
        offered: Version,
    },
    /// The artifact's hash is not the signed one.
    #[error("artifact {what}: sha256 {actual} does not match signed {expected}")]
    HashMismatch {
        /// The artifact (path or URL).
        what: String,
        /// Signed hash.
        expected: String,
        /// Computed hash.
        actual: String,
    },
    /// The artifact's size is not the signed one.
    #[error("artifact {what}: {actual} bytes, signed size is {expected}")]
    SizeMismatch {
        /// The artifact (path or URL).
        what: String,
        /// Signed size.
        expected: u64,
        /// Size seen (for a too-long stream: the bytes seen when it was cut).
        actual: u64,
    },
    /// A private key file is accessible to group or others.
    #[error("private key {path} has mode {mode:o}; refusing to use it (run: chmod 600 {path})", path = path.display())]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A passphrase-encrypted private key given where only a plain key file is usable.
    #[error("private key {path} is passphrase-encrypted; this program needs an unencrypted key file (only worker-release decrypts keys)", path = path.display())]
    KeyEncrypted {
        /// The key file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// The stable reason label of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Json { .. } | Error::Malformed { .. } => Reason::Malformed,
            Error::WrongType { .. } => Reason::WrongType,
            Error::UnknownScheme { .. } => Reason::UnknownScheme,
            Error::InvalidRoot { .. } => Reason::InvalidRoot,
            Error::Unsigned { .. } => Reason::Unsigned,
            Error::DuplicateKeyid { .. } => Reason::DuplicateKeyid,
            Error::BadSignature { .. } => Reason::BadSignature,
            Error::Threshold { .. } => Reason::Threshold,
            Error::Expired { .. } => Reason::Expired,
            Error::RootVersion { .. } => Reason::RootVersion,
            Error::ReplayedSerial { .. } => Reason::ReplayedSerial,
            Error::WrongChannel { .. } => Reason::WrongChannel,
            Error::ManifestMismatch { .. } => Reason::ManifestMismatch,
            Error::Downgrade { .. } => Reason::Downgrade,
            Error::WrongProduct { .. } => Reason::WrongProduct,
            Error::WrongPlatform { .. } => Reason::WrongPlatform,
            Error::NeedsHop { .. } => Reason::NeedsHop,
            Error::HashMismatch { .. } => Reason::HashMismatch,
            Error::SizeMismatch { .. } => Reason::SizeMismatch,
            Error::KeyPermissions { .. } => Reason::KeyPermissions,
            Error::KeyEncrypted { .. } => Reason::KeyEncrypted,
            Error::Io { .. } => Reason::Io,
        }
    }

    pub(crate) fn malformed(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Malformed {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
