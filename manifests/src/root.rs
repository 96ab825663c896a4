//! The `root` document: the trust anchor. It lists the keys and, for each role (`root`,
//! `release`, `channel`), which keys may sign for it and how many must.
//!
//! Rotation: root N+1 is accepted only when signed by a threshold of root N's `root` keys AND a
//! threshold of its own `root` keys, and its version is exactly N+1. Expiry is enforced on the
//! root finally trusted, not on the intermediate ones walked through (an agent that was offline
//! for a year must still be able to follow the chain).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::doc_type::DocType;
use crate::error::{Error, Result};
use crate::role::{Key, Role};
use crate::signed::{Document, Signed};
use crate::timestamp::{ExpirationEnforcement, Timestamp};

/// The trust anchor: keys and roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Root {
    /// Always `root`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "root"))]
    pub doc_type: DocType,
    /// Starts at 1; each rotation adds exactly 1.
    pub version: u64,
    /// After this instant the root is no longer trusted (agents then refuse updates until a newer
    /// root is published).
    pub expires: Timestamp,
    /// Every key any role uses, by key id.
    pub keys: BTreeMap<String, Key>,
    /// The three roles.
    pub roles: Roles,
    /// Fields this version of the format does not know, kept so the signature still verifies.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The roles of a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Roles {
    /// Signs root documents (rotation). Offline.
    pub root: Role,
    /// Signs release manifests and rollback directives. Offline.
    pub release: Role,
    /// Signs channel statements. Online: the update server holds it.
    pub channel: Role,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Names of the roles, for messages and lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleName {
    /// `root`
    Root,
    /// `release`
    Release,
    /// `channel`
    Channel,
}

impl RoleName {
    /// The role's name as written in root documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Release => "release",
            RoleName::Channel => "channel",
        }
    }
}

impl Document for Root {
    const TYPE: DocType = DocType::Root;

    fn declared_type(&self) -> DocType {
        self.doc_type
    }
}

impl Root {
    /// The role definition of `name`.
    pub fn role(&self, name: RoleName) -> &Role {
        match name {
            RoleName::Root => &self.roles.root,
            RoleName::Release => &self.roles.release,
            RoleName::Channel => &self.roles.channel,
        }
    }

    /// Checks the root's internal consistency: every key parses, is `ed25519` and has the right
    /// id; every role has distinct key ids, all defined, and a threshold in 1 ..= count.
    pub fn validate(&self) -> Result<()> {
        if self.doc_type != DocType::Root {
            return Err(Error::WrongType {
                expected: "root",
                found: self.doc_type.as_str().to_owned(),
            });
        }
        if self.version == 0 {
            return Err(Error::malformed("version", "root versions start at 1"));
        }
        if self.keys.is_empty() {
            return Err(Error::InvalidRoot {
                role: "*".to_owned(),
                problem: "the root defines no keys".to_owned(),
            });
        }
        for (keyid, key) in &self.keys {
            key.verifying_key(keyid)?;
        }
        for name in [RoleName::Root, RoleName::Release, RoleName::Channel] {
            let role = self.role(name);
            let invalid = |problem: String| Error::InvalidRoot {
                role: name.as_str().to_owned(),
                problem,
            };
            if role.keyids.is_empty() {
                return Err(invalid("no keys".to_owned()));
            }
            let distinct: BTreeSet<&String> = role.keyids.iter().collect();
            if distinct.len() != role.keyids.len() {
                return Err(invalid("a key id is listed twice".to_owned()));
            }
            if let Some(missing) = role.keyids.iter().find(|k| !self.keys.contains_key(*k)) {
                return Err(invalid(format!("key {missing} is not defined in keys")));
            }
            if role.threshold == 0 || role.threshold as usize > role.keyids.len() {
                return Err(invalid(format!(
                    "threshold {} must be between 1 and the number of keys ({})",
                    role.threshold,
                    role.keyids.len()
                )));
            }
        }
        Ok(())
    }

    /// Checks a document was signed by a threshold of this root's keys for `role`.
    pub fn verify_signed<T: Document>(&self, role: RoleName, doc: &Signed<T>) -> Result<()> {
        doc.verify_role(role.as_str(), self.role(role), &self.keys)
    }

    /// Whether `next` gives the channel role other keys (ids, key material) or another
    /// threshold than this root does. A client that accepted channel statements under this root
    /// then forgets their serial (as TUF does when the timestamp key rotates): a rotated-out key
    /// may have signed a serial no legitimate statement will ever reach.
    pub fn channel_role_changed(&self, next: &Root) -> bool {
        fn channel_keys(root: &Root) -> (BTreeMap<&String, Option<&Key>>, u32) {
            let role = root.role(RoleName::Channel);
            let keys = role
                .keyids
                .iter()
                .map(|id| (id, root.keys.get(id)))
                .collect();
            (keys, role.threshold)
        }
        channel_keys(self) != channel_keys(next)
    }

    /// Fails with [`Error::Expired`] when `expires` is before `now` and enforcement is on.
    pub fn check_expiry(&self, now: Timestamp, enforcement: ExpirationEnforcement) -> Result<()> {
        check_expiry("root", self.expires, now, enforcement)
    }
}

impl Signed<Root> {
    /// Trusts a root from a trusted source (the `--root` file an operator installs): it must be
    /// internally valid and signed by a threshold of its own root keys, and not expired.
    pub fn verify_self(&self, now: Timestamp, enforcement: ExpirationEnforcement) -> Result<Root> {
        self.signed.validate()?;
        self.signed.verify_signed(RoleName::Root, self)?;
        self.signed.check_expiry(now, enforcement)?;
        Ok(self.signed.clone())
    }
}

/// Accepts `next` as the successor of `trusted`: version exactly +1, signed by a threshold of
/// the trusted root's root keys and of its own. Does not check `next`'s expiry (see
/// [`follow_root_chain`]).
pub fn verify_rotation(trusted: &Root, next: &Signed<Root>) -> Result<Root> {
    let expected = trusted
        .version
        .checked_add(1)
        .ok_or_else(|| Error::malformed("version", "overflow"))?;
    if next.signed.version != expected {
        return Err(Error::RootVersion {
            trusted: trusted.version,
            expected,
            found: next.signed.version,
        });
    }
    next.signed.validate()?;
    trusted.verify_signed(RoleName::Root, next)?;
    next.signed.verify_signed(RoleName::Root, next)?;
    Ok(next.signed.clone())
}

/// One change a root rotation makes to a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The role changed.
    pub role: RoleName,
    /// Whether it lowers trust (a key removed, a threshold lowered): a rotation making one
    /// needs an explicit `--allow-weaker` from `worker-release` and from the update server.
    pub weaker: bool,
    /// The change in words (`release: key 3f2a... removed`, `root: threshold 2 -> 1`).
    pub text: String,
}

/// What `next` changes in each role of `previous`: keys removed, keys added, thresholds.
pub fn role_changes(previous: &Root, next: &Root) -> Vec<RoleChange> {
    let mut changes = Vec::new();
    for name in [RoleName::Root, RoleName::Release, RoleName::Channel] {
        let (old, new) = (previous.role(name), next.role(name));
        let mut change = |weaker: bool, text: String| {
            changes.push(RoleChange {
                role: name,
                weaker,
                text: format!("{}: {text}", name.as_str()),
            });
        };
        for id in old.keyids.iter().filter(|id| !new.keyids.contains(id)) {
            change(true, format!("key {id} removed"));
        }
        for id in new.keyids.iter().filter(|id| !old.keyids.contains(id)) {
            change(false, format!("key {id} added"));
        }
        if new.threshold != old.threshold {
            let lower = new.threshold < old.threshold;
            change(
                lower,
                format!(
                    "threshold {} -> {} ({})",
                    old.threshold,
                    new.threshold,
                    if lower { "lowered" } else { "raised" }
                ),
            );
        }
    }
    changes
}

/// The weakening changes of [`role_changes`], joined in one line (empty when there is none).
pub fn weakening(previous: &Root, next: &Root) -> String {
    role_changes(previous, next)
        .into_iter()
        .filter(|change| change.weaker)
        .map(|change| change.text)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Walks `chain` (roots N+1, N+2, ... in order) from `trusted` and returns the last one, whose
/// expiry is then enforced.
pub fn follow_root_chain(
    trusted: &Root,
    chain: &[Signed<Root>],
    now: Timestamp,
    enforcement: ExpirationEnforcement,
) -> Result<Root> {
    let mut current = trusted.clone();
    for next in chain {
        current = verify_rotation(&current, next)?;
    }
    current.check_expiry(now, enforcement)?;
    Ok(current)
}

pub(crate) fn check_expiry(
    doc: &'static str,
    expires: Timestamp,
    now: Timestamp,
    enforcement: ExpirationEnforcement,
) -> Result<()> {
    match enforcement {
        ExpirationEnforcement::Safe if expires <= now => Err(Error::Expired { doc, expires, now }),
        ExpirationEnforcement::Safe | ExpirationEnforcement::Unsafe => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    fn entry(key: &PrivateKey) -> (String, Key) {
        let public = key.public();
        let key = Key {
            scheme: public.scheme,
            public: public.public,
            extra: BTreeMap::new(),
        };
        (public.keyid, key)
    }

    fn root(keys: &[&PrivateKey; 3]) -> Root {
        let [root, release, channel] = keys;
        Root {
            doc_type: DocType::Root,
            version: 1,
            expires: Timestamp::now().plus_secs(86_400),
            keys: keys.iter().map(|k| entry(k)).collect(),
            roles: Roles {
                root: Role::new(vec![root.keyid()], 1),
                release: Role::new(vec![release.keyid()], 1),
                channel: Role::new(vec![channel.keyid()], 1),
                extra: BTreeMap::new(),
            },
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn only_a_change_of_the_channel_role_counts_as_a_channel_role_change() {
        let generate = |name: &str| PrivateKey::generate(name).expect("key");
        let (root_key, release_key, channel_key) =
            (generate("root"), generate("release"), generate("channel"));
        let old = root(&[&root_key, &release_key, &channel_key]);
        let mut next = old.clone();
        next.version = 2;
        next.roles.release = Role::new(vec![root_key.keyid()], 1);
        assert!(!old.channel_role_changed(&next), "another role rotated");

        let new_channel = generate("channel-2");
        let rotated = root(&[&root_key, &release_key, &new_channel]);
        assert!(old.channel_role_changed(&rotated), "new channel key");

        let mut added = old.clone();
        let (id, key) = entry(&new_channel);
        added.keys.insert(id.clone(), key);
        added.roles.channel = Role::new(vec![channel_key.keyid(), id], 1);
        assert!(old.channel_role_changed(&added), "a key added");
        let mut threshold = added.clone();
        threshold.roles.channel.threshold = 2;
        assert!(added.channel_role_changed(&threshold), "threshold");
    }
}
