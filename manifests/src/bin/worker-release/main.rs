//! `worker-release`: the release engineer's CLI. Makes keys and roots, signs releases and
//! rollback directives, verifies and inspects documents (`offline`): private keys never leave the
//! machine it runs on, and none of that talks to the network. Publishes what was signed and drives
//! channels through the update server's admin API (`admin`), with an admin token and no key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin;
mod offline;

/// Sign, verify and inspect worker-agent release documents; publish and roll them out.
#[derive(Debug, Parser)]
#[command(name = "worker-release", version = manifests::long_version!(), about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an ed25519 key pair: DIR/NAME.key (mode 0600) and DIR/NAME.pub.
    Keygen {
        /// Directory to write the key pair into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Key name, e.g. root-1, release-1, channel.
        #[arg(long)]
        name: String,
    },
    /// Create root version 1 from public keys and thresholds, signed by root keys.
    InitRoot(InitRootArgs),
    /// Create root N+1 from the current root, signed by old AND new root keys.
    RotateRoot(RotateRootArgs),
    /// Sign a release manifest for artifacts (hashes and sizes computed by streaming the files).
    SignRelease(SignReleaseArgs),
    /// Sign a rollback directive allowing agents on FROM versions to move down to TO.
    SignRollback(SignRollbackArgs),
    /// Sign a channel statement by hand (the update server normally does this online).
    SignChannel(SignChannelArgs),
    /// Add one more signature to an existing document (threshold ceremonies, one key per person).
    Sign {
        /// The document to sign (rewritten in place, atomically).
        doc: PathBuf,
        /// Private key file(s).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Verify a document against a trusted root (and optionally an artifact against a release).
    Verify(VerifyArgs),
    /// Print a document in readable form, without trusting it.
    Inspect {
        /// The document.
        doc: PathBuf,
    },
    /// Upload a signed release and its artifacts to the update server.
    Publish(admin::PublishArgs),
    /// Point a channel at a published release, for a share of the fleet.
    Promote(admin::PromoteArgs),
    /// Halt a channel's rollout.
    Halt(admin::HaltArgs),
    /// Resume a halted channel.
    Resume(admin::ResumeArgs),
    /// Roll a channel back with a signed rollback directive.
    Rollback(admin::RollbackArgs),
    /// Publish a signed root rotation (root N+1) to the update server.
    PublishRoot(admin::PublishRootArgs),
    /// Show channels, the fleet by version and the last hour's failures.
    Status(admin::StatusArgs),
    /// Show the update server's audit trail, newest first.
    Audit(admin::AuditArgs),
}

/// Role key sets for a root: public key files and thresholds.
#[derive(Debug, Args)]
struct RoleKeys {
    /// Public key file(s) of the root role.
    #[arg(long = "root-key")]
    root_keys: Vec<PathBuf>,
    /// Signatures needed for the root role.
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// Public key file(s) of the release role.
    #[arg(long = "release-key")]
    release_keys: Vec<PathBuf>,
    /// Signatures needed for the release role.
    #[arg(long, default_value_t = 1)]
    release_threshold: u32,
    /// Public key file(s) of the channel role (the update server's online key).
    #[arg(long = "channel-key")]
    channel_keys: Vec<PathBuf>,
    /// Signatures needed for the channel role.
    #[arg(long, default_value_t = 1)]
    channel_threshold: u32,
}

#[derive(Debug, Args)]
struct InitRootArgs {
    #[command(flatten)]
    roles: RoleKeys,
    /// Expiry: a duration from now (365d, 52w) or a timestamp (2027-01-01T00:00:00Z).
    #[arg(long, default_value = "365d")]
    expires: String,
    /// Root private key(s) to sign with.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write root.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct RotateRootArgs {
    /// The currently trusted root.
    #[arg(long)]
    root: PathBuf,
    /// New role key sets; a role given no keys keeps its keys and threshold from the old root.
    #[command(flatten)]
    roles: RoleKeys,
    /// Expiry of the new root.
    #[arg(long, default_value = "365d")]
    expires: String,
    /// Private keys to sign with: old root keys and new root keys.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write the new root.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct SignReleaseArgs {
    /// The release version (semver).
    #[arg(long)]
    version: String,
    /// PLATFORM=PATH[=URL], one per platform. URL defaults to the update server's
    /// /api/worker-updates/artifacts/<sha256>.
    #[arg(long = "artifact", required = true)]
    artifacts: Vec<String>,
    /// Oldest version allowed to update straight to this one (default: 0.0.0, any).
    #[arg(long, default_value = "0.0.0")]
    minimum_version: String,
    /// Release notes.
    #[arg(long, default_value = "")]
    notes: String,
    /// Product name.
    #[arg(long, default_value = manifests::PRODUCT)]
    product: String,
    /// Release private key(s).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write release.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct SignRollbackArgs {
    /// Version(s) allowed to move down.
    #[arg(long = "from", required = true)]
    from: Vec<String>,
    /// The version to move down to.
    #[arg(long)]
    to: String,
    /// Expiry: a duration from now or a timestamp.
    #[arg(long, default_value = "7d")]
    expires: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
    /// Product name.
    #[arg(long, default_value = manifests::PRODUCT)]
    product: String,
    /// Release private key(s).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write rollback.json.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct SignChannelArgs {
    /// Channel name.
    #[arg(long)]
    channel: String,
    /// Serial (must exceed every serial agents have seen on this channel).
    #[arg(long)]
    serial: u64,
    /// The signed release the channel points to.
    #[arg(long)]
    release: PathBuf,
    /// Rollout percentage.
    #[arg(long, default_value_t = 100)]
    percent: u8,
    /// Cohort salt (default: the release version).
    #[arg(long)]
    salt: Option<String>,
    /// Expiry: a duration from now or a timestamp.
    #[arg(long, default_value = "24h")]
    expires: String,
    /// Minimum version (default: 0.0.0).
    #[arg(long, default_value = "0.0.0")]
    minimum_version: String,
    /// Recommended version (default: the release's).
    #[arg(long)]
    recommended_version: Option<String>,
    /// Mark the channel halted.
    #[arg(long)]
    halted: bool,
    /// Mark the update urgent.
    #[arg(long)]
    urgent: bool,
    /// Channel private key(s).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write the statement.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The trusted root.
    #[arg(long)]
    root: PathBuf,
    /// The document to verify (root, release, channel or rollback).
    doc: PathBuf,
    /// With a release: check this file against the artifact with the same hash, or PLATFORM=PATH.
    #[arg(long)]
    artifact: Option<String>,
    /// Do not refuse expired documents (forensics only).
    #[arg(long)]
    allow_expired: bool,
    /// Verify as of this time instead of now.
    #[arg(long)]
    now: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out, name } => offline::keygen(&out, &name),
        Command::InitRoot(args) => offline::init_root(args),
        Command::RotateRoot(args) => offline::rotate_root(args),
        Command::SignRelease(args) => offline::sign_release(args),
        Command::SignRollback(args) => offline::sign_rollback(args),
        Command::SignChannel(args) => offline::sign_channel(args),
        Command::Sign { doc, keys } => offline::add_signatures(&doc, &keys),
        Command::Verify(args) => offline::verify(args),
        Command::Inspect { doc } => offline::inspect(&doc),
        Command::Publish(args) => admin::publish(args),
        Command::Promote(args) => admin::promote(args),
        Command::Halt(args) => admin::halt(args),
        Command::Resume(args) => admin::resume(args),
        Command::Rollback(args) => admin::rollback(args),
        Command::PublishRoot(args) => admin::publish_root(args),
        Command::Status(args) => admin::status(args),
        Command::Audit(args) => admin::audit(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Lead with the stable reason label when there is one, so scripts can match on it.
            match reason_label(&error) {
                Some(reason) => eprintln!("worker-release: error [{reason}]: {error:#}"),
                None => eprintln!("worker-release: error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// The stable reason label of a failure: a trust-format error's, else the update server's.
fn reason_label(error: &anyhow::Error) -> Option<String> {
    if let Some(cause) = error
        .chain()
        .find_map(|e| e.downcast_ref::<manifests::Error>())
    {
        return Some(cause.reason().to_string());
    }
    error
        .chain()
        .find_map(|e| e.downcast_ref::<admin::ServerRefused>())
        .and_then(|refused| refused.reason.clone())
}
