//! `worker-release`: the release engineer's CLI. Makes keys and roots, signs releases and
//! rollback directives, verifies and inspects documents (`offline`): private keys never leave the
//! machine it runs on, and none of that talks to the network. Publishes what was signed and drives
//! channels through the update server's admin API (`admin`), with an admin token and no key.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod failure;
mod keyfile;
mod offline;
mod rotate;

/// Sign, verify and inspect worker-agent release documents; publish and roll them out.
#[derive(Debug, Parser)]
// `about` is the text `--help` has always led with (the package description of `manifests`, when
// the CLI lived there), so the help output stays the same.
#[command(
    name = "worker-release",
    version = manifests::long_version!(),
    about = "Signed release format for worker-agent fleets, and the worker-release signing CLI",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an ed25519 key pair: DIR/NAME.key (mode 0600) and DIR/NAME.pub.
    ///
    /// With --encrypt, NAME.key is encrypted to a passphrase (age, scrypt), asked on the
    /// terminal or read from the file WORKER_RELEASE_PASSPHRASE_FILE names; every command that
    /// signs then asks for it the same way.
    Keygen {
        /// Directory to write the key pair into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Key name, e.g. root-1, release-1, channel.
        #[arg(long)]
        name: String,
        /// Encrypt the private key to a passphrase (for offline keys; the update server's
        /// online channel key must stay unencrypted).
        #[arg(long)]
        encrypt: bool,
    },
    /// Create root version 1 from public keys and thresholds, signed by root keys.
    InitRoot(offline::InitRootArgs),
    /// Create root N+1 from the current root (keys and thresholds kept unless told), signed by
    /// old AND new root keys.
    RotateRoot(rotate::RotateRootArgs),
    /// Sign a release manifest for artifacts (hashes and sizes computed by streaming the files).
    SignRelease(offline::SignReleaseArgs),
    /// Sign a rollback directive allowing agents on FROM versions to move down to TO.
    SignRollback(offline::SignRollbackArgs),
    /// Sign a channel statement by hand (the update server normally does this online).
    SignChannel(offline::SignChannelArgs),
    /// Add one more signature to an existing document (threshold ceremonies, one key per person).
    Sign {
        /// The document to sign (rewritten in place, atomically).
        doc: PathBuf,
        /// Private key file(s).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Verify a document against a trusted root (and optionally an artifact against a release).
    Verify(offline::VerifyArgs),
    /// Print a document in readable form, without trusting it.
    Inspect {
        /// The document.
        doc: PathBuf,
    },
    /// Upload a signed release and its artifacts to the update server.
    Publish(admin::PublishArgs),
    /// Create, list or delete the server's channels.
    #[command(subcommand)]
    Channel(admin::ChannelCommand),
    /// Forget a decommissioned worker (and revoke its enrolled credential).
    #[command(subcommand)]
    Worker(admin::WorkerCommand),
    /// Make a join token a worker enrols with once (prints it once); `list`, `revoke ID`.
    EnrollToken(admin::EnrollTokenArgs),
    /// Point a channel at a published release, for a share of the fleet.
    Promote(admin::PromoteArgs),
    /// Roll a release out wave by wave: `rollout plan --channel C --version V --waves 5,10%@1h,100%`.
    #[command(subcommand)]
    Rollout(admin::RolloutCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out, name, encrypt } => offline::keygen(&out, &name, encrypt),
        Command::InitRoot(args) => offline::init_root(args),
        Command::RotateRoot(args) => rotate::rotate_root(args),
        Command::SignRelease(args) => offline::sign_release(args),
        Command::SignRollback(args) => offline::sign_rollback(args),
        Command::SignChannel(args) => offline::sign_channel(args),
        Command::Sign { doc, keys } => offline::add_signatures(&doc, &keys),
        Command::Verify(args) => offline::verify(args),
        Command::Inspect { doc } => offline::inspect(&doc),
        Command::Publish(args) => admin::publish(args),
        Command::Channel(command) => admin::channel(command),
        Command::Worker(command) => admin::worker(command),
        Command::EnrollToken(args) => admin::enroll_token(args),
        Command::Promote(args) => admin::promote(args),
        Command::Rollout(command) => admin::rollout(command),
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
            // Lead with the stable reason label, so scripts can match on it.
            eprintln!(
                "worker-release: error [{}]: {}",
                failure::reason_label(&error),
                failure::one_line(&error)
            );
            ExitCode::FAILURE
        }
    }
}
