//! The offline commands: keys, roots, releases, rollback directives, verification.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::failure::refuse;
use anyhow::{bail, Context, Result};
use clap::Args;

mod artifact;
mod delta;

use manifests::{
    hash_file, verify_file, Artifact, ChannelStatement, DocType, Document, ExpirationEnforcement,
    Key, PrivateKey, PublicKeyFile, Release, ReleasePointer, Role, RoleName, Roles, Rollback,
    Rollout, Root, Signed, Timestamp, Version,
};

/// Role key sets for a root: public key files and thresholds.
#[derive(Debug, Args)]
pub struct RoleKeys {
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
pub struct InitRootArgs {
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
pub struct SignReleaseArgs {
    /// The release version (semver).
    #[arg(long)]
    version: String,
    /// PLATFORM=PATH[=URL], one per platform. URL defaults to the update server's
    /// /api/worker-updates/artifacts/<sha256>.
    #[arg(long = "artifact", required = true)]
    artifacts: Vec<String>,
    /// A mirror holding the artifacts by hash (an http:// or https:// base URL; each artifact
    /// is fetched from URL/<sha256>), repeatable: signed into each artifact's `mirrors`, which
    /// agents try in the order given before the artifact's URL and the update server's copy.
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
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
    /// The trusted root: refuse a key that is not one of its release keys, and check that the
    /// keys given reach the release threshold.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Where to write release.json (an existing file is refused without --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// An earlier worker-agent binary (repeatable): a signed patch from it to this release's
    /// artifact of its platform is written next to --out and listed in the release.
    #[arg(long = "delta-from")]
    delta_from: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignRollbackArgs {
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
pub struct SignChannelArgs {
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
pub struct VerifyArgs {
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

pub fn keygen(out: &Path, name: &str, encrypt: bool) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(refuse(
            "usage",
            format!("key name {name:?} may only contain letters, digits, '-', '_' and '.'"),
        ));
    }
    let key = PrivateKey::generate(name)?;
    // Ask for the passphrase before creating anything: a refusal leaves no directory behind.
    let encrypted = if encrypt {
        Some(crate::keyfile::encrypted_key_file(&key)?)
    } else {
        None
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (private, public) = match &encrypted {
        Some(body) => key.write_pair_as(out, body)?,
        None => key.write_pair(out)?,
    };
    println!("keyid   {}", key.keyid());
    println!(
        "private {} (mode 0600{})",
        private.display(),
        if encrypt {
            ", passphrase-encrypted"
        } else {
            ""
        }
    );
    println!("public  {}", public.display());
    Ok(())
}

pub fn init_root(args: InitRootArgs) -> Result<()> {
    let now = Timestamp::now();
    let mut keys = BTreeMap::new();
    let roles = Roles {
        root: role_from(
            &args.roles.root_keys,
            args.roles.root_threshold,
            "--root-key",
            &mut keys,
        )?
        .context("--root-key is required")?,
        release: role_from(
            &args.roles.release_keys,
            args.roles.release_threshold,
            "--release-key",
            &mut keys,
        )?
        .context("--release-key is required")?,
        channel: role_from(
            &args.roles.channel_keys,
            args.roles.channel_threshold,
            "--channel-key",
            &mut keys,
        )?
        .context("--channel-key is required")?,
        extra: BTreeMap::new(),
    };
    let root = Root {
        doc_type: DocType::Root,
        version: 1,
        expires: parse_expiry(&args.expires, now)?,
        keys,
        roles,
        extra: BTreeMap::new(),
    };
    root.validate()?;
    let signers = load_signers(
        &args.keys,
        |id| root.roles.root.keyids.iter().any(|k| k == id),
        "root key of this root",
    )?;
    let doc = Signed::sign(root, &signers.iter().collect::<Vec<_>>())?;
    write_doc(&args.out, &doc)?;
    match doc.verify_self(now, ExpirationEnforcement::Safe) {
        Ok(root) => println!(
            "wrote {}: root version 1, expires {}, signed by {}/{} root key(s)",
            args.out.display(),
            root.expires,
            doc.signatures.len(),
            root.roles.root.keyids.len()
        ),
        Err(error) if error.reason() == manifests::Reason::Threshold => println!(
            "wrote {} but it is not yet valid: {error}; add signatures with `worker-release sign {} --key K`",
            args.out.display(),
            args.out.display()
        ),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

pub fn sign_release(args: SignReleaseArgs) -> Result<()> {
    let version: Version = args
        .version
        .parse()
        .with_context(|| format!("--version {:?}", args.version))?;
    let minimum_version: Version = args
        .minimum_version
        .parse()
        .with_context(|| format!("--minimum-version {:?}", args.minimum_version))?;
    if minimum_version > version {
        return Err(refuse(
            "usage",
            format!(
                "--minimum-version {minimum_version} is above --version {version}: no agent \
                 could ever update to it"
            ),
        ));
    }
    if args.out.exists() && !args.force {
        return Err(refuse(
            "exists",
            format!(
                "--out {} exists; pass --force to replace it",
                args.out.display()
            ),
        ));
    }
    for mirror in &args.mirrors {
        let rest = mirror
            .strip_prefix("https://")
            .or_else(|| mirror.strip_prefix("http://"));
        if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            return Err(refuse(
                "usage",
                format!("--mirror {mirror:?}: expected an absolute http:// or https:// URL"),
            ));
        }
    }
    let mut artifacts = Vec::new();
    let mut artifact_paths = Vec::new();
    for spec in &args.artifacts {
        let mut parts = spec.splitn(3, '=');
        let (Some(platform), Some(path)) = (parts.next(), parts.next()) else {
            bail!("--artifact {spec:?}: expected PLATFORM=PATH[=URL]");
        };
        if platform.is_empty() || path.is_empty() {
            bail!("--artifact {spec:?}: expected PLATFORM=PATH[=URL]");
        }
        artifact::check_platform(platform)?;
        check_agent_build(Path::new(path), platform, &version)?;
        let (sha256, size) = hash_file(Path::new(path))?;
        let url = parts.next().map_or_else(
            || format!("/api/worker-updates/artifacts/{sha256}"),
            str::to_owned,
        );
        let mirrors = args
            .mirrors
            .iter()
            .map(|base| format!("{}/{sha256}", base.trim_end_matches('/')))
            .collect();
        artifacts.push(Artifact {
            platform: platform.to_owned(),
            sha256,
            size,
            url,
            mirrors,
            deltas: Vec::new(),
            extra: BTreeMap::new(),
        });
        artifact_paths.push(PathBuf::from(path));
    }
    delta::add_deltas(
        &args.delta_from,
        &mut artifacts,
        &artifact_paths,
        &version,
        &args.out,
    )?;
    let release = Release {
        doc_type: DocType::Release,
        product: args.product,
        version,
        released_at: Timestamp::now(),
        minimum_version,
        artifacts,
        notes: args.notes,
        extra: BTreeMap::new(),
    };
    release.validate()?;
    let root = match &args.root {
        Some(path) => Some(
            Signed::<Root>::load(path)?
                .verify_self(Timestamp::now(), ExpirationEnforcement::Safe)
                .with_context(|| format!("trusted root {}", path.display()))?,
        ),
        None => None,
    };
    let signers = match &root {
        Some(root) => load_signers(
            &args.keys,
            |id| root.roles.release.keyids.iter().any(|k| k == id),
            &format!("release key of root version {}", root.version),
        )?,
        None => load_signers(&args.keys, |_| true, "")?,
    };
    let doc = Signed::sign(release, &signers.iter().collect::<Vec<_>>())?;
    if let Some(root) = &root {
        root.verify_signed(RoleName::Release, &doc)?;
    }
    write_doc(&args.out, &doc)?;
    println!(
        "wrote {}: {} {} ({} artifact(s)), manifest_sha256 {}",
        args.out.display(),
        doc.signed.product,
        doc.signed.version,
        doc.signed.artifacts.len(),
        doc.signed_sha256()?
    );
    Ok(())
}

pub fn sign_rollback(args: SignRollbackArgs) -> Result<()> {
    let now = Timestamp::now();
    let from = args
        .from
        .iter()
        .map(|v| {
            v.parse::<Version>()
                .with_context(|| format!("--from {v:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let to: Version = args
        .to
        .parse()
        .with_context(|| format!("--to {:?}", args.to))?;
    if let Some(lower) = from.iter().find(|v| **v <= to) {
        bail!(
            "--from {lower} is not above --to {to}: a rollback directive only permits moving down"
        );
    }
    let directive = Rollback {
        doc_type: DocType::Rollback,
        product: args.product,
        from,
        to,
        issued_at: now,
        expires: parse_expiry(&args.expires, now)?,
        reason: args.reason,
        extra: BTreeMap::new(),
    };
    let signers = load_signers(&args.keys, |_| true, "")?;
    let doc = Signed::sign(directive, &signers.iter().collect::<Vec<_>>())?;
    write_doc(&args.out, &doc)?;
    println!(
        "wrote {}: rollback to {}, expires {}",
        args.out.display(),
        doc.signed.to,
        doc.signed.expires
    );
    Ok(())
}

pub fn sign_channel(args: SignChannelArgs) -> Result<()> {
    let now = Timestamp::now();
    let release = Signed::<Release>::load(&args.release)?;
    if args.percent > 100 {
        bail!("--percent {} is above 100", args.percent);
    }
    let recommended = match &args.recommended_version {
        Some(v) => v
            .parse()
            .with_context(|| format!("--recommended-version {v:?}"))?,
        None => release.signed.version.clone(),
    };
    let statement = ChannelStatement {
        doc_type: DocType::Channel,
        channel: args.channel,
        serial: args.serial,
        issued_at: now,
        expires: parse_expiry(&args.expires, now)?,
        release: ReleasePointer {
            version: release.signed.version.clone(),
            manifest_sha256: release.signed_sha256()?,
            extra: BTreeMap::new(),
        },
        rollout: Rollout {
            percent: args.percent,
            salt: args
                .salt
                .unwrap_or_else(|| release.signed.version.to_string()),
            wave: None,
            extra: BTreeMap::new(),
        },
        minimum_version: args
            .minimum_version
            .parse()
            .with_context(|| format!("--minimum-version {:?}", args.minimum_version))?,
        recommended_version: recommended,
        halted: args.halted,
        urgent: args.urgent,
        extra: BTreeMap::new(),
    };
    let signers = load_signers(&args.keys, |_| true, "")?;
    let doc = Signed::sign(statement, &signers.iter().collect::<Vec<_>>())?;
    write_doc(&args.out, &doc)?;
    println!(
        "wrote {}: channel {} serial {} -> {} at {}%",
        args.out.display(),
        doc.signed.channel,
        doc.signed.serial,
        doc.signed.release.version,
        doc.signed.rollout.percent
    );
    Ok(())
}

pub fn add_signatures(path: &Path, key_paths: &[PathBuf]) -> Result<()> {
    let signers = load_signers(key_paths, |_| true, "")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match doc_type_of(&bytes, path)? {
        DocType::Root => resign::<Root>(path, &bytes, &signers),
        DocType::Release => resign::<Release>(path, &bytes, &signers),
        DocType::Channel => resign::<ChannelStatement>(path, &bytes, &signers),
        DocType::Rollback => resign::<Rollback>(path, &bytes, &signers),
    }
}

fn resign<T: Document>(path: &Path, bytes: &[u8], signers: &[PrivateKey]) -> Result<()> {
    let mut doc = Signed::<T>::from_slice(bytes)?;
    for key in signers {
        doc.add_signature(key)?;
    }
    write_doc(path, &doc)?;
    println!(
        "signed {} with {} key(s); it now carries {} signature(s)",
        path.display(),
        signers.len(),
        doc.signatures.len()
    );
    Ok(())
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let now = match &args.now {
        Some(text) => text.parse().with_context(|| format!("--now {text:?}"))?,
        None => Timestamp::now(),
    };
    let enforcement = if args.allow_expired {
        ExpirationEnforcement::Unsafe
    } else {
        ExpirationEnforcement::Safe
    };
    let root_doc = Signed::<Root>::load(&args.root)?;
    let root = root_doc
        .verify_self(now, enforcement)
        .with_context(|| format!("trusted root {}", args.root.display()))?;
    let bytes =
        std::fs::read(&args.doc).with_context(|| format!("reading {}", args.doc.display()))?;
    let doc_type = doc_type_of(&bytes, &args.doc)?;
    if args.artifact.is_some() && doc_type != DocType::Release {
        bail!(
            "--artifact only applies to release documents, {} is a {doc_type}",
            args.doc.display()
        );
    }
    let summary = match doc_type {
        DocType::Root => {
            let next = Signed::<Root>::from_slice(&bytes)?;
            if next.signed.version == root.version {
                let verified = next.verify_self(now, enforcement)?;
                if verified != root {
                    bail!(
                        "{} has the trusted root's version but other content",
                        args.doc.display()
                    );
                }
                format!(
                    "root version {} (the trusted root itself)",
                    verified.version
                )
            } else {
                let verified = manifests::follow_root_chain(
                    &root,
                    std::slice::from_ref(&next),
                    now,
                    enforcement,
                )?;
                format!(
                    "root version {} (valid rotation from version {})",
                    verified.version, root.version
                )
            }
        }
        DocType::Release => {
            let release = Signed::<Release>::from_slice(&bytes)?;
            root.verify_signed(RoleName::Release, &release)?;
            release.signed.validate()?;
            if let Some(spec) = &args.artifact {
                verify_artifact_arg(&release.signed, spec)?;
            }
            format!(
                "release {} {} ({} artifact(s)){}",
                release.signed.product,
                release.signed.version,
                release.signed.artifacts.len(),
                if args.artifact.is_some() {
                    ", artifact matches"
                } else {
                    ""
                }
            )
        }
        DocType::Channel => {
            let statement = Signed::<ChannelStatement>::from_slice(&bytes)?;
            root.verify_signed(RoleName::Channel, &statement)?;
            check_expiry("channel", statement.signed.expires, now, enforcement)?;
            format!(
                "channel {} serial {} -> {} at {}%{}, expires {}",
                statement.signed.channel,
                statement.signed.serial,
                statement.signed.release.version,
                statement.signed.rollout.percent,
                if statement.signed.halted {
                    " (HALTED)"
                } else {
                    ""
                },
                statement.signed.expires
            )
        }
        DocType::Rollback => {
            let directive = Signed::<Rollback>::from_slice(&bytes)?;
            root.verify_signed(RoleName::Release, &directive)?;
            check_expiry("rollback", directive.signed.expires, now, enforcement)?;
            format!(
                "rollback from {} to {}, expires {}",
                join(&directive.signed.from),
                directive.signed.to,
                directive.signed.expires
            )
        }
    };
    println!("OK: {}: {summary}", args.doc.display());
    Ok(())
}

fn verify_artifact_arg(release: &Release, spec: &str) -> Result<()> {
    if let Some((platform, path)) = spec.split_once('=') {
        let artifact = release.artifact_for(platform).with_context(|| {
            format!(
                "release {} has no artifact for platform {platform}",
                release.version
            )
        })?;
        verify_file(Path::new(path), artifact)?;
        return Ok(());
    }
    let path = Path::new(spec);
    let (sha256, size) = hash_file(path)?;
    match release.artifacts.iter().find(|a| a.sha256 == sha256) {
        Some(artifact) if artifact.size == size => Ok(()),
        Some(artifact) => Err(manifests::Error::SizeMismatch {
            what: spec.to_owned(),
            expected: artifact.size,
            actual: size,
        }
        .into()),
        None => Err(manifests::Error::HashMismatch {
            what: spec.to_owned(),
            expected: release
                .artifacts
                .iter()
                .map(|a| format!("{}={}", a.platform, a.sha256))
                .collect::<Vec<_>>()
                .join(", "),
            actual: sha256,
        }
        .into()),
    }
}

pub fn inspect(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let now = Timestamp::now();
    let expiry = |expires: Timestamp| {
        if expires <= now {
            format!("{expires} (EXPIRED)")
        } else {
            let hours = (expires.unix() - now.unix()) / 3600;
            format!("{expires} (in {}d {}h)", hours / 24, hours % 24)
        }
    };
    let signatures = match doc_type_of(&bytes, path)? {
        DocType::Root => {
            let doc = Signed::<Root>::from_slice(&bytes)?;
            let root = &doc.signed;
            println!("type     root");
            println!("version  {}", root.version);
            println!("expires  {}", expiry(root.expires));
            for name in [RoleName::Root, RoleName::Release, RoleName::Channel] {
                let role = root.role(name);
                println!(
                    "role     {:<8} threshold {} of {}: {}",
                    name.as_str(),
                    role.threshold,
                    role.keyids.len(),
                    role.keyids
                        .iter()
                        .map(|k| short(k))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            doc.signatures
        }
        DocType::Release => {
            let doc = Signed::<Release>::from_slice(&bytes)?;
            let release = &doc.signed;
            println!("type             release");
            println!("product          {}", release.product);
            println!("version          {}", release.version);
            println!("released_at      {}", release.released_at);
            println!("minimum_version  {}", release.minimum_version);
            println!("manifest_sha256  {}", doc.signed_sha256()?);
            for artifact in &release.artifacts {
                println!(
                    "artifact         {} {} bytes sha256 {} url {}",
                    artifact.platform, artifact.size, artifact.sha256, artifact.url
                );
                for mirror in &artifact.mirrors {
                    println!("  mirror         {mirror}");
                }
            }
            if !release.notes.is_empty() {
                println!("notes            {}", release.notes);
            }
            doc.signatures
        }
        DocType::Channel => {
            let doc = Signed::<ChannelStatement>::from_slice(&bytes)?;
            let stmt = &doc.signed;
            println!("type                 channel");
            println!("channel              {}", stmt.channel);
            println!("serial               {}", stmt.serial);
            println!("issued_at            {}", stmt.issued_at);
            println!("expires              {}", expiry(stmt.expires));
            println!(
                "release              {} ({})",
                stmt.release.version, stmt.release.manifest_sha256
            );
            println!(
                "rollout              {}% (salt {:?})",
                stmt.rollout.percent, stmt.rollout.salt
            );
            println!("minimum_version      {}", stmt.minimum_version);
            println!("recommended_version  {}", stmt.recommended_version);
            println!("halted               {}", stmt.halted);
            println!("urgent               {}", stmt.urgent);
            doc.signatures
        }
        DocType::Rollback => {
            let doc = Signed::<Rollback>::from_slice(&bytes)?;
            let directive = &doc.signed;
            println!("type       rollback");
            println!("product    {}", directive.product);
            println!("from       {}", join(&directive.from));
            println!("to         {}", directive.to);
            println!("issued_at  {}", directive.issued_at);
            println!("expires    {}", expiry(directive.expires));
            println!("reason     {}", directive.reason);
            doc.signatures
        }
    };
    for signature in &signatures {
        println!("signature  keyid {}", signature.keyid);
    }
    println!(
        "(not verified: use `worker-release verify --root root.json {}`)",
        path.display()
    );
    Ok(())
}

fn check_expiry(
    doc: &'static str,
    expires: Timestamp,
    now: Timestamp,
    enforcement: ExpirationEnforcement,
) -> Result<()> {
    if enforcement == ExpirationEnforcement::Safe && expires <= now {
        return Err(manifests::Error::Expired { doc, expires, now }.into());
    }
    Ok(())
}

fn join(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(keyid: &str) -> &str {
    keyid.get(..12).unwrap_or(keyid)
}

/// Reads `signed.type` to dispatch on the document type.
fn doc_type_of(bytes: &[u8], path: &Path) -> Result<DocType> {
    #[derive(serde::Deserialize)]
    struct Probe {
        signed: TypeOnly,
    }
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        doc_type: DocType,
    }
    let probe: Probe = serde_json::from_slice(bytes).with_context(|| {
        format!(
            "{}: not a signed document with a known signed.type",
            path.display()
        )
    })?;
    Ok(probe.signed.doc_type)
}

pub(crate) fn role_from(
    paths: &[PathBuf],
    threshold: u32,
    flag: &str,
    keys: &mut BTreeMap<String, Key>,
) -> Result<Option<Role>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut keyids = Vec::new();
    for path in paths {
        let public =
            PublicKeyFile::load(path).with_context(|| format!("{flag} {}", path.display()))?;
        let verifying = public.verifying_key()?;
        if keyids.contains(&public.keyid) {
            bail!("{flag} {}: the same key is given twice", path.display());
        }
        keys.insert(public.keyid.clone(), Key::ed25519(&verifying));
        keyids.push(public.keyid);
    }
    Ok(Some(Role::new(keyids, threshold)))
}

pub(crate) fn load_signers(
    paths: &[PathBuf],
    allowed: impl Fn(&str) -> bool,
    what: &str,
) -> Result<Vec<PrivateKey>> {
    let mut signers: Vec<PrivateKey> = Vec::new();
    for path in paths {
        let key = load_private(path)?;
        if !allowed(&key.keyid()) {
            return Err(refuse(
                "wrong_role",
                format!(
                    "--key {}: key {} is not a {what}",
                    path.display(),
                    key.keyid()
                ),
            ));
        }
        if signers.iter().any(|k| k.keyid() == key.keyid()) {
            bail!("--key {}: the same key is given twice", path.display());
        }
        signers.push(key);
    }
    Ok(signers)
}

/// A private key (decrypted when it is passphrase-encrypted); a public key file given instead
/// is named as such.
fn load_private(path: &Path) -> Result<PrivateKey> {
    crate::keyfile::load_private(path).map_err(|error| {
        if PublicKeyFile::load(path).is_ok() {
            return refuse(
                "wrong_role",
                format!(
                    "--key {}: this is a public key; sign with the private key file (NAME.key) \
                     next to it",
                    path.display()
                ),
            );
        }
        error
    })
}

/// When `path` is a worker-agent binary, refuses it unless it was built as `version` for
/// `platform` (read from its build marker, never by running it).
fn check_agent_build(path: &Path, platform: &str, version: &Version) -> Result<()> {
    let Some(build) = artifact::agent_build(path)? else {
        eprintln!(
            "worker-release: note: {} is not a worker-agent binary with a build marker; its \
             version is not checked",
            path.display()
        );
        return Ok(());
    };
    if build.version != version.to_string() {
        return Err(refuse(
            "artifact_mismatch",
            format!(
                "--artifact {}: this worker-agent binary is version {}, not --version {version}",
                path.display(),
                build.version
            ),
        ));
    }
    if build.target != platform {
        return Err(refuse(
            "artifact_mismatch",
            format!(
                "--artifact {}: this worker-agent binary is built for {}, not {platform}",
                path.display(),
                build.target
            ),
        ));
    }
    Ok(())
}

pub(crate) fn parse_expiry(text: &str, now: Timestamp) -> Result<Timestamp> {
    if let Ok(stamp) = text.parse::<Timestamp>() {
        return Ok(stamp);
    }
    let secs =
        manifests::parse_duration_secs(text).with_context(|| format!("--expires {text:?}"))?;
    Ok(now.plus_secs(secs))
}

/// Writes a document atomically: temp file in the same directory, fsync, rename.
pub(crate) fn write_doc<T: Document>(path: &Path, doc: &Signed<T>) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    file.write_all(&doc.to_json_pretty()?)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
