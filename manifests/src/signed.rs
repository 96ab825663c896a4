//! The signed envelope `{"signed": {...}, "signatures": [{"keyid", "sig"}]}` and its verification.
//!
//! What is signed is `worker-release/v1/<type>` + NUL + the RFC 8785 canonical JSON of `signed`.
//! The context string binds a signature to one document type: a release signature can never be
//! replayed as a channel statement, even by a key that holds both roles.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::Signature as Ed25519Signature;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::doc_type::DocType;
use crate::error::{Error, Result};
use crate::keys::{decode_hex, PrivateKey};
use crate::role::{Key, Role};

/// Prefix of the signing context; the document type follows it.
pub const CONTEXT_PREFIX: &str = "worker-release/v1/";

/// One signature over a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Hex SHA-256 of the signing key's public key.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub keyid: String,
    /// Hex of the 64-byte ed25519 signature.
    #[schemars(regex(pattern = r"^[0-9a-f]{128}$"))]
    pub sig: String,
}

/// A document type that can be signed: it knows its `type` tag and carries it in a field.
pub trait Document: Serialize + DeserializeOwned + Clone {
    /// The document type.
    const TYPE: DocType;

    /// The value of the document's own `type` field, checked against [`Document::TYPE`].
    fn declared_type(&self) -> DocType;
}

/// A document and the signatures over it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// The signed content.
    pub signed: T,
    /// Signatures over the canonical encoding of `signed`.
    pub signatures: Vec<Signature>,
}

impl<T: Document> Signed<T> {
    /// Parses a document of type `T` from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let doc: Self = serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: format!("{} document", T::TYPE),
            source,
        })?;
        if doc.signed.declared_type() != T::TYPE {
            return Err(Error::WrongType {
                expected: T::TYPE.as_str(),
                found: doc.signed.declared_type().as_str().to_owned(),
            });
        }
        Ok(doc)
    }

    /// Reads and parses a document file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_slice(&bytes).map_err(|e| match e {
            Error::Json { source, .. } => Error::Json {
                what: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    /// Wraps `signed` with signatures by each of `keys`.
    pub fn sign(signed: T, keys: &[&PrivateKey]) -> Result<Self> {
        let mut doc = Signed {
            signed,
            signatures: Vec::new(),
        };
        for key in keys {
            doc.add_signature(key)?;
        }
        Ok(doc)
    }

    /// Adds (or replaces) the signature of `key`.
    pub fn add_signature(&mut self, key: &PrivateKey) -> Result<()> {
        let message = self.signing_message()?;
        let keyid = key.keyid();
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(Signature {
            keyid,
            sig: hex::encode(key.sign_raw(&message)),
        });
        Ok(())
    }

    /// The RFC 8785 canonical JSON of `signed`.
    pub fn canonical_signed(&self) -> Result<Vec<u8>> {
        canonical_json(&self.signed)
    }

    /// Hex SHA-256 of [`Signed::canonical_signed`]: what a channel statement's
    /// `release.manifest_sha256` pins.
    pub fn signed_sha256(&self) -> Result<String> {
        Ok(hex::encode(Sha256::digest(self.canonical_signed()?)))
    }

    /// The exact bytes a signature covers.
    pub fn signing_message(&self) -> Result<Vec<u8>> {
        let canonical = self.canonical_signed()?;
        let mut message = Vec::with_capacity(CONTEXT_PREFIX.len() + 16 + canonical.len());
        message.extend_from_slice(CONTEXT_PREFIX.as_bytes());
        message.extend_from_slice(T::TYPE.as_str().as_bytes());
        message.push(0);
        message.extend_from_slice(&canonical);
        Ok(message)
    }

    /// Pretty JSON for files (what is signed is the canonical form, so layout does not matter).
    pub fn to_json_pretty(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: format!("{} document", T::TYPE),
            source,
        })?;
        out.push(b'\n');
        Ok(out)
    }

    /// Checks that a threshold of distinct keys of `role` signed this document.
    ///
    /// Fail-closed: an empty signature list, a malformed or repeated key id, a malformed
    /// signature, or any signature by an authorised key that does not verify is an error, even
    /// when other signatures would meet the threshold. Signatures by keys outside the role are
    /// ignored (they neither help nor hurt).
    pub fn verify_role(
        &self,
        role_name: &str,
        role: &Role,
        keys: &BTreeMap<String, Key>,
    ) -> Result<()> {
        let doc = T::TYPE.as_str();
        if self.signed.declared_type() != T::TYPE {
            return Err(Error::WrongType {
                expected: doc,
                found: self.signed.declared_type().as_str().to_owned(),
            });
        }
        if self.signatures.is_empty() {
            return Err(Error::Unsigned { doc });
        }
        let authorised: BTreeSet<&str> = role.keyids.iter().map(String::as_str).collect();
        let message = self.signing_message()?;
        let mut seen = BTreeSet::new();
        let mut valid = 0usize;
        for (index, signature) in self.signatures.iter().enumerate() {
            decode_hex::<32>(&format!("signatures[{index}].keyid"), &signature.keyid)?;
            let sig_bytes = decode_hex::<64>(&format!("signatures[{index}].sig"), &signature.sig)?;
            if !seen.insert(signature.keyid.as_str()) {
                return Err(Error::DuplicateKeyid {
                    doc,
                    keyid: signature.keyid.clone(),
                });
            }
            if !authorised.contains(signature.keyid.as_str()) {
                continue;
            }
            let key = keys
                .get(&signature.keyid)
                .ok_or_else(|| Error::InvalidRoot {
                    role: role_name.to_owned(),
                    problem: format!("key {} is listed but not defined", signature.keyid),
                })?;
            let verifying = key.verifying_key(&signature.keyid)?;
            verifying
                .verify_strict(&message, &Ed25519Signature::from_bytes(&sig_bytes))
                .map_err(|_| Error::BadSignature {
                    doc,
                    role: role_name.to_owned(),
                    keyid: signature.keyid.clone(),
                })?;
            valid += 1;
        }
        if valid < role.threshold as usize || role.threshold == 0 {
            return Err(Error::Threshold {
                doc,
                role: role_name.to_owned(),
                valid,
                threshold: role.threshold,
            });
        }
        Ok(())
    }
}

/// Integers up to this magnitude always have an exact RFC 8785 encoding. JCS writes numbers as
/// IEEE doubles, so beyond it some integers share one encoding (2^53 + 1 is written as 2^53),
/// and a signature would not bind which one was meant: such integers are refused.
pub const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// RFC 8785 canonical JSON of any serialisable value. An integer whose canonical encoding is not
/// its own decimal text (see [`MAX_EXACT_INTEGER`]) is refused: it would make signatures
/// malleable.
pub fn canonical_json<S: Serialize>(value: &S) -> Result<Vec<u8>> {
    let json_error = |source| Error::Json {
        what: "canonical encoding".to_owned(),
        source,
    };
    let tree = serde_json::to_value(value).map_err(json_error)?;
    check_exact_integers(&tree, "signed")?;
    serde_json_canonicalizer::to_vec(&tree).map_err(json_error)
}

fn check_exact_integers(value: &serde_json::Value, path: &str) -> Result<()> {
    match value {
        serde_json::Value::Number(number) => {
            let magnitude = number
                .as_u64()
                .or_else(|| number.as_i64().map(i64::unsigned_abs));
            let inexact = magnitude.is_some_and(|m| m > MAX_EXACT_INTEGER) && {
                // Integer-valued doubles (e.g. 1e17) keep their digits; others collapse.
                #[allow(clippy::cast_precision_loss)]
                let as_double = number.as_f64().unwrap_or(f64::NAN);
                serde_json_canonicalizer::to_string(&as_double)
                    .ok()
                    .as_deref()
                    != Some(&number.to_string())
            };
            if inexact {
                return Err(Error::malformed(
                    path,
                    format!("integer {number} has no exact RFC 8785 encoding (it is beyond 2^53 and not a double)"),
                ));
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_exact_integers(item, &format!("{path}[{index}]"))),
        serde_json::Value::Object(map) => map
            .iter()
            .try_for_each(|(key, item)| check_exact_integers(item, &format!("{path}.{key}"))),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::String(_) => {
            Ok(())
        }
    }
}
