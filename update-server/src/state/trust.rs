//! Trust: the root chain, loaded at start (extended by `--root` when that is the next version)
//! and by rotations published through the admin API.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use manifests::{ExpirationEnforcement, PrivateKey, RoleName, Root, Signed};

use super::{now, read_lock, write_lock, App, CachedBody};
use crate::config::ServeConfig;
use crate::error::{Error, Result};
use crate::store::{AuditRecord, Store};
use crate::StartupError;

/// The root chain the server trusts.
#[derive(Debug)]
pub(super) struct Trust {
    /// Raw root documents by version.
    pub(super) chain: BTreeMap<u64, Bytes>,
    /// The newest root, verified.
    pub(super) current: Root,
    /// `/latest` body for a channel nothing was promoted on.
    pub(super) empty: CachedBody,
}

impl Trust {
    /// Loads the root chain: the stored one, extended by `--root` when that file is the next version.
    pub(super) fn load(config: &ServeConfig, store: &dyn Store) -> Result<Self, StartupError> {
        let (root_file, poll_interval) = (config.root.as_path(), config.poll_interval);
        let bytes = std::fs::read(root_file).map_err(|e| {
            StartupError::Config(format!("cannot read root {}: {e}", root_file.display()))
        })?;
        let file_doc = Signed::<Root>::from_slice(&bytes)
            .map_err(|e| StartupError::Config(format!("root {}: {e}", root_file.display())))?;
        let now_ts = now();
        let stored = store.roots()?;
        let mut chain: BTreeMap<u64, Bytes> = BTreeMap::new();
        let mut current: Option<Root> = None;
        for (version, body) in stored {
            let doc = Signed::<Root>::from_slice(&body)
                .map_err(|e| StartupError::Config(format!("stored root version {version}: {e}")))?;
            let root = match &current {
                None => doc.verify_self(now_ts, ExpirationEnforcement::Unsafe),
                Some(previous) => manifests::verify_rotation(previous, &doc),
            }
            .map_err(|e| StartupError::Config(format!("stored root version {version}: {e}")))?;
            chain.insert(version, Bytes::from(body));
            current = Some(root);
        }
        let file_version = file_doc.signed.version;
        let audit = |detail: String| AuditRecord {
            at: now_ts.unix(),
            kind: "root".to_owned(),
            actor: "server".to_owned(),
            channel: String::new(),
            version: file_version.to_string(),
            detail,
        };
        let current = match current {
            None => {
                let root = file_doc
                    .verify_self(now_ts, ExpirationEnforcement::Unsafe)
                    .map_err(|e| StartupError::Config(format!("root {}: {e}", root_file.display())))?;
                store.add_root(file_version, &bytes, &audit(format!("trusted root version {file_version} installed from {}", root_file.display())))?;
                chain.insert(file_version, Bytes::from(bytes));
                root
            }
            Some(latest) if file_version == latest.version + 1 => {
                let root = manifests::verify_rotation(&latest, &file_doc).map_err(|e| {
                    StartupError::Config(format!("root {} is not a valid rotation of stored root version {}: {e}", root_file.display(), latest.version))
                })?;
                let weaker = manifests::weakening(&latest, &root);
                if !weaker.is_empty() && !config.allow_weaker {
                    return Err(StartupError::Config(format!(
                        "root {}: {}",
                        root_file.display(),
                        Error::WeakerRoot { version: file_version, changes: weaker }
                    )));
                }
                if !weaker.is_empty() {
                    tracing::warn!(root_version = file_version, changes = %weaker, "weaker root accepted (--allow-weaker)");
                }
                store.add_root(file_version, &bytes, &audit(format!("root rotated to version {file_version} from {}", root_file.display())))?;
                chain.insert(file_version, Bytes::from(bytes));
                root
            }
            Some(latest) if file_version <= latest.version => {
                let same = chain
                    .get(&file_version)
                    .and_then(|stored| Signed::<Root>::from_slice(stored).ok())
                    .is_some_and(|stored| stored.signed == file_doc.signed);
                if !same {
                    return Err(StartupError::Config(format!(
                        "root {} (version {file_version}) is not the root version {file_version} this server already trusts",
                        root_file.display()
                    )));
                }
                latest
            }
            Some(latest) => {
                return Err(StartupError::Config(format!(
                    "root {} is version {file_version} but this server trusts version {}: publish the intermediate roots first",
                    root_file.display(),
                    latest.version
                )))
            }
        };
        Ok(Trust {
            empty: empty_body(current.version, poll_interval),
            chain,
            current,
        })
    }

    /// Every root of the chain, newest first (each was verified when it was added).
    pub(super) fn roots_newest_first(&self) -> Vec<Root> {
        self.chain
            .values()
            .rev()
            .filter_map(|body| Signed::<Root>::from_slice(body).ok())
            .map(|doc| doc.signed)
            .collect()
    }

    /// Refuses a channel key the current root does not authorise alone, or that is also a key
    /// of an offline role.
    pub(super) fn check_channel_key(
        &self,
        channel_key: &PrivateKey,
        key_file: &Path,
    ) -> Result<(), StartupError> {
        let role = self.current.role(RoleName::Channel);
        if !role.keyids.contains(&channel_key.keyid()) {
            return Err(StartupError::Config(format!(
                "channel key {} ({}) is not a key of the channel role of root version {} (channel keys: {})",
                key_file.display(),
                channel_key.keyid(),
                self.current.version,
                role.keyids.join(", ")
            )));
        }
        if let Some(error) = offline_role_of(&self.current, &channel_key.keyid()) {
            return Err(StartupError::Config(format!(
                "channel key {}: {error}",
                key_file.display()
            )));
        }
        if role.threshold > 1 {
            return Err(StartupError::Config(format!(
                "the channel role of root version {} needs {} signatures; this server holds one channel key",
                self.current.version, role.threshold
            )));
        }
        Ok(())
    }
}

impl App {
    /// Current root version.
    pub fn root_version(&self) -> u64 {
        read_lock(&self.trust).current.version
    }

    /// Raw root document `version`.
    pub fn root_document(&self, version: u64) -> Option<Bytes> {
        read_lock(&self.trust).chain.get(&version).cloned()
    }

    /// Accepts root N+1 (a valid rotation from the current root).
    /// A root that weakens a role (a key removed, a threshold lowered) needs `allow_weaker`.
    /// Publishing a root this server already trusts again changes nothing and succeeds
    /// ([`RootPublished::newly_stored`] false); another root of such a version is refused
    /// ([`Error::RootConflict`]).
    pub async fn publish_root(
        &self,
        body: Bytes,
        actor: &str,
        allow_weaker: bool,
    ) -> Result<RootPublished> {
        let doc = Signed::<Root>::from_slice(&body)?;
        let _admin = self.admin.lock().await;
        let current = read_lock(&self.trust).current.clone();
        if doc.signed.version <= current.version {
            let version = doc.signed.version;
            let same = read_lock(&self.trust)
                .chain
                .get(&version)
                .and_then(|stored| Signed::<Root>::from_slice(stored).ok())
                .is_some_and(|stored| stored.signed == doc.signed);
            if !same {
                return Err(Error::RootConflict {
                    version,
                    next: current.version + 1,
                });
            }
            tracing::info!(root_version = version, %actor, "root already published");
            return Ok(RootPublished {
                version,
                newly_stored: false,
            });
        }
        let next = manifests::verify_rotation(&current, &doc)?;
        if let Some(error) = offline_role_of(&next, &self.channel_key.keyid()) {
            return Err(error);
        }
        let weaker = manifests::weakening(&current, &next);
        if !weaker.is_empty() && !allow_weaker {
            return Err(Error::WeakerRoot {
                version: next.version,
                changes: weaker,
            });
        }
        if !next
            .roles
            .channel
            .keyids
            .contains(&self.channel_key.keyid())
        {
            return Err(Error::RootWithoutChannelKey {
                version: next.version,
                keyid: self.channel_key.keyid(),
            });
        }
        let version = next.version;
        let audit = AuditRecord {
            at: now().unix(),
            kind: "root".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: version.to_string(),
            detail: if weaker.is_empty() {
                format!("root rotated from version {} to {version}", current.version)
            } else {
                format!(
                    "root rotated from version {} to {version}, weaker (allowed): {weaker}",
                    current.version
                )
            },
        };
        let stored = body.to_vec();
        self.db(move |store| store.add_root(version, &stored, &audit))
            .await?;
        {
            let mut trust = write_lock(&self.trust);
            trust.chain.insert(version, body);
            trust.current = next;
            trust.empty = empty_body(version, self.config.poll_interval);
        }
        self.rebuild_views();
        self.recheck_releases();
        self.resign_all_locked(actor).await;
        self.notify();
        tracing::info!(root_version = version, %actor, "root rotated");
        Ok(RootPublished {
            version,
            newly_stored: true,
        })
    }
}

/// The answer to publishing a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPublished {
    /// The root's version.
    pub version: u64,
    /// Stored now (false: this very root was already trusted).
    pub newly_stored: bool,
}

/// The refusal when `root` names the online channel key `keyid` in an offline role (root or
/// release): the server would then hold a key that signs roots or releases.
fn offline_role_of(root: &Root, keyid: &str) -> Option<Error> {
    [RoleName::Root, RoleName::Release]
        .into_iter()
        .find(|name| root.role(*name).keyids.iter().any(|id| id == keyid))
        .map(|role| Error::ChannelKeyInOfflineRole {
            version: root.version,
            role: role.as_str(),
            keyid: keyid.to_owned(),
        })
}

pub(super) fn empty_body(root_version: u64, poll_interval: Duration) -> CachedBody {
    CachedBody::new(&serde_json::json!({
        "root_version": root_version,
        "channel": null,
        "release": null,
        "rollback": null,
        "poll_interval_s": poll_interval.as_secs(),
    }))
}
