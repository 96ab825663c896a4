//! The entries of a root document that signature checks need: a public key ([`Key`]) and a
//! role's authorised key ids with their threshold ([`Role`]). `signed` checks signatures against
//! them; `root` assembles them into the trust anchor.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::keys::{keyid_of, parse_public, SCHEME_ED25519};

/// A public key in a root document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Key {
    /// Only `ed25519` is implemented; anything else is refused.
    pub scheme: String,
    /// Hex of the 32-byte public key.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub public: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Key {
    /// An `ed25519` key entry for `public`.
    pub fn ed25519(public: &VerifyingKey) -> Self {
        Key {
            scheme: SCHEME_ED25519.to_owned(),
            public: hex::encode(public.as_bytes()),
            extra: BTreeMap::new(),
        }
    }

    /// The verifying key, after checking the scheme and that `keyid` is its hash.
    pub fn verifying_key(&self, keyid: &str) -> Result<VerifyingKey> {
        if self.scheme != SCHEME_ED25519 {
            return Err(Error::UnknownScheme {
                keyid: keyid.to_owned(),
                scheme: self.scheme.clone(),
            });
        }
        let key = parse_public(&format!("keys.{keyid}.public"), &self.public)?;
        if keyid_of(&key) != keyid {
            return Err(Error::malformed(
                format!("keys.{keyid}"),
                "key id is not the SHA-256 of the public key",
            ));
        }
        Ok(key)
    }
}

/// Which keys may sign for a role, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Role {
    /// Authorised key ids (distinct, each defined in `keys`).
    pub keyids: Vec<String>,
    /// How many distinct authorised keys must sign (1 ..= keyids.len()).
    #[schemars(range(min = 1))]
    pub threshold: u32,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Role {
    /// A role of `keyids` with `threshold`.
    pub fn new(keyids: Vec<String>, threshold: u32) -> Self {
        Role {
            keyids,
            threshold,
            extra: BTreeMap::new(),
        }
    }
}
