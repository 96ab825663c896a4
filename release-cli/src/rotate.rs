//! `rotate-root`: root N+1 from root N. Every role keeps its keys and threshold unless told
//! (`--*-key` adds, `--remove-key` removes, `--*-threshold` sets); a rotation that removes a key
//! or lowers a threshold is weaker and needs `--allow-weaker`; `--dry-run` shows the changes and
//! writes nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use manifests::{
    DocType, ExpirationEnforcement, PublicKeyFile, Role, RoleName, Root, Signed, Timestamp,
};

use crate::offline::{load_signers, parse_expiry, role_from, write_doc};

#[derive(Debug, Args)]
pub struct RotateRootArgs {
    /// The currently trusted root.
    #[arg(long)]
    root: PathBuf,
    /// Public key file(s) to add to the root role (its keys stay unless `--remove-key`).
    #[arg(long = "root-key")]
    root_keys: Vec<PathBuf>,
    /// New threshold of the root role (default: the current one).
    #[arg(long)]
    root_threshold: Option<u32>,
    /// Public key file(s) to add to the release role.
    #[arg(long = "release-key")]
    release_keys: Vec<PathBuf>,
    /// New threshold of the release role (default: the current one).
    #[arg(long)]
    release_threshold: Option<u32>,
    /// Public key file(s) to add to the channel role (the update server's online key).
    #[arg(long = "channel-key")]
    channel_keys: Vec<PathBuf>,
    /// New threshold of the channel role (default: the current one).
    #[arg(long)]
    channel_threshold: Option<u32>,
    /// Public key file(s) to remove from every role that holds them (weaker: needs
    /// `--allow-weaker`).
    #[arg(long = "remove-key")]
    remove_keys: Vec<PathBuf>,
    /// Accept a root that removes a key or lowers a threshold.
    #[arg(long)]
    allow_weaker: bool,
    /// Print what the rotation changes and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Expiry of the new root.
    #[arg(long, default_value = "365d")]
    expires: String,
    /// Private keys to sign with: old root keys and new root keys.
    #[arg(long = "key", required_unless_present = "dry_run")]
    keys: Vec<PathBuf>,
    /// Where to write the new root.
    #[arg(long, required_unless_present = "dry_run")]
    out: Option<PathBuf>,
}

pub fn rotate_root(args: RotateRootArgs) -> Result<()> {
    let now = Timestamp::now();
    let old_doc = Signed::<Root>::load(&args.root)?;
    // The old root may have expired: rotating is how an operator recovers from that.
    let old = old_doc.verify_self(now, ExpirationEnforcement::Unsafe)?;
    let next = next_root(&args, &old, now)?;
    let changes = manifests::role_changes(&old, &next);
    println!(
        "root version {} -> {} (expires {}):",
        old.version, next.version, next.expires
    );
    if changes.is_empty() {
        println!("  roles unchanged");
    }
    for change in &changes {
        let mark = if change.weaker { " (weaker)" } else { "" };
        println!("  {}{mark}", change.text);
    }
    let weaker = manifests::weakening(&old, &next);
    if args.dry_run {
        println!(
            "dry run: nothing written{}",
            if weaker.is_empty() {
                ""
            } else {
                "; writing it needs --allow-weaker"
            }
        );
        return Ok(());
    }
    if !weaker.is_empty() && !args.allow_weaker {
        bail!(
            "root version {} weakens trust ({weaker}); pass --allow-weaker if that is intended",
            next.version
        );
    }
    let out = args.out.as_ref().context("--out is required")?;
    let is_signer = |id: &str| {
        old.roles
            .root
            .keyids
            .iter()
            .chain(&next.roles.root.keyids)
            .any(|k| k == id)
    };
    let signers = load_signers(&args.keys, is_signer, "root key of the old or the new root")?;
    let doc = Signed::sign(next, &signers.iter().collect::<Vec<_>>())?;
    write_doc(out, &doc)?;
    match manifests::verify_rotation(&old, &doc) {
        Ok(root) => println!(
            "wrote {}: root version {} (rotation from {} verified)",
            out.display(),
            root.version,
            old.version
        ),
        Err(error) if error.reason() == manifests::Reason::Threshold => println!(
            "wrote {} but the rotation is not yet valid: {error}; add signatures with `worker-release sign {} --key K`",
            out.display(),
            out.display()
        ),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Root N+1: `old`'s roles with the keys removed, the keys added and the thresholds set.
fn next_root(args: &RotateRootArgs, old: &Root, now: Timestamp) -> Result<Root> {
    let mut keys = old.keys.clone();
    let mut roles = old.roles.clone();
    let mut removed = BTreeSet::new();
    for path in &args.remove_keys {
        let public = PublicKeyFile::load(path)
            .with_context(|| format!("--remove-key {}", path.display()))?;
        let mut found = false;
        for name in [RoleName::Root, RoleName::Release, RoleName::Channel] {
            let role = role_mut(&mut roles, name);
            found |= role.keyids.contains(&public.keyid);
            role.keyids.retain(|id| id != &public.keyid);
        }
        if !found {
            bail!(
                "--remove-key {}: key {} is in no role of root version {}",
                path.display(),
                public.keyid,
                old.version
            );
        }
        removed.insert(public.keyid);
    }
    let additions = [
        (
            RoleName::Root,
            &args.root_keys,
            args.root_threshold,
            "--root-key",
        ),
        (
            RoleName::Release,
            &args.release_keys,
            args.release_threshold,
            "--release-key",
        ),
        (
            RoleName::Channel,
            &args.channel_keys,
            args.channel_threshold,
            "--channel-key",
        ),
    ];
    for (name, paths, threshold, flag) in additions {
        let role = role_mut(&mut roles, name);
        if let Some(added) = role_from(paths, 1, flag, &mut keys)? {
            for id in added.keyids {
                if role.keyids.contains(&id) || removed.contains(&id) {
                    bail!("{flag}: key {id} is already a key of the {} role, or removed by --remove-key", name.as_str());
                }
                role.keyids.push(id);
            }
        }
        if let Some(threshold) = threshold {
            role.threshold = threshold;
        }
    }
    // Keys no role names any more leave the root.
    let used: BTreeSet<String> = [&roles.root, &roles.release, &roles.channel]
        .iter()
        .flat_map(|role| role.keyids.iter().cloned())
        .collect();
    keys.retain(|id, _| used.contains(id));
    let next = Root {
        doc_type: DocType::Root,
        version: old.version + 1,
        expires: parse_expiry(&args.expires, now)?,
        keys,
        roles,
        extra: old.extra.clone(),
    };
    next.validate().with_context(|| {
        format!(
            "root version {} would be invalid (a threshold above its role's key count needs --*-threshold)",
            next.version
        )
    })?;
    Ok(next)
}

fn role_mut(roles: &mut manifests::Roles, name: RoleName) -> &mut Role {
    match name {
        RoleName::Root => &mut roles.root,
        RoleName::Release => &mut roles.release,
        RoleName::Channel => &mut roles.channel,
    }
}
