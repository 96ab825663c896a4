//! ed25519 keys: key ids, the on-disk key files of `worker-release keygen`, and signing.
//!
//! A key id is the lower-case hex SHA-256 of the 32-byte public key. Private key files are JSON
//! `{"keyid","name","scheme":"ed25519","private":"<hex seed>"}` with mode 0600; a file that group
//! or others may read is refused, like ssh does.
//!
//! A passphrase-encrypted key file (`worker-release keygen --encrypt`) is that same JSON file
//! encrypted to a passphrase with age (scrypt recipient, ASCII armour): it begins with
//! [`ENCRYPTED_KEY_HEADER`] and `age -d` turns it back into the plain file. This module owns the
//! plain format and tells the two apart ([`is_encrypted_key_file`]); the encryption itself lives
//! in `worker-release` (`release-cli/src/keyfile.rs`), so this format crate needs no age.
//! [`PrivateKey::load`] refuses an encrypted file with [`Error::KeyEncrypted`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The only signature scheme implemented.
pub const SCHEME_ED25519: &str = "ed25519";

/// Lower-case hex SHA-256 of a public key: the id of that key everywhere in this format.
pub fn keyid_of(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))
}

/// Decodes lower-case hex of an exact length, naming `field` on error.
pub fn decode_hex<const N: usize>(field: &str, text: &str) -> Result<[u8; N]> {
    if text.len() != 2 * N
        || text
            .bytes()
            .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::malformed(
            field,
            format!(
                "expected {} lower-case hex digits, got {:?}",
                2 * N,
                truncate(text)
            ),
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| Error::malformed(field, e.to_string()))?;
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

/// The first line of a passphrase-encrypted private key file: an ASCII-armoured age file.
pub const ENCRYPTED_KEY_HEADER: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// The first line of a binary (unarmoured) age file, accepted as an encrypted key too.
const AGE_BINARY_HEADER: &[u8] = b"age-encryption.org/v1\n";

/// Whether the contents of a private key file are passphrase-encrypted (an age file).
pub fn is_encrypted_key_file(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    bytes.starts_with(ENCRYPTED_KEY_HEADER.as_bytes()) || bytes.starts_with(AGE_BINARY_HEADER)
}

/// Parses a hex ed25519 public key, naming `field` on error.
pub fn parse_public(field: &str, text: &str) -> Result<VerifyingKey> {
    let bytes = decode_hex::<32>(field, text)?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|e| Error::malformed(field, format!("not an ed25519 point: {e}")))
}

/// The public half of a key, as written to `NAME.pub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyFile {
    /// Hex SHA-256 of the public key.
    pub keyid: String,
    /// The human name given at generation (e.g. `root-1`).
    pub name: String,
    /// Always `ed25519`.
    pub scheme: String,
    /// Hex of the 32-byte public key.
    pub public: String,
}

impl PublicKeyFile {
    /// Reads and checks a `.pub` file (its key id must be the hash of its key).
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: PublicKeyFile = serde_json::from_slice(&text).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?;
        file.verifying_key()?;
        Ok(file)
    }

    /// The verifying key, after checking scheme and key id.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        if self.scheme != SCHEME_ED25519 {
            return Err(Error::UnknownScheme {
                keyid: self.keyid.clone(),
                scheme: self.scheme.clone(),
            });
        }
        let key = parse_public("public", &self.public)?;
        if keyid_of(&key) != self.keyid {
            return Err(Error::malformed(
                "keyid",
                format!("{} is not the SHA-256 of the public key", self.keyid),
            ));
        }
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
struct PrivateKeyFile {
    keyid: String,
    name: String,
    scheme: String,
    private: Zeroizing<String>,
}

/// A private signing key, loaded from a `NAME.key` file or freshly generated.
pub struct PrivateKey {
    name: String,
    signing: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("name", &self.name)
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut())
            .map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
        Ok(Self::from_seed(name, &seed))
    }

    /// A key from a 32-byte seed (deterministic keys for tests and examples).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        PrivateKey {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The name given at generation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id (hex SHA-256 of the public key).
    pub fn keyid(&self) -> String {
        keyid_of(&self.signing.verifying_key())
    }

    /// The public half.
    pub fn public(&self) -> PublicKeyFile {
        let verifying = self.signing.verifying_key();
        PublicKeyFile {
            keyid: keyid_of(&verifying),
            name: self.name.clone(),
            scheme: SCHEME_ED25519.to_owned(),
            public: hex::encode(verifying.as_bytes()),
        }
    }

    /// Signs `message` (already domain-separated by the caller).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Loads a private key file, refusing one that group or others can access, and an encrypted
    /// one ([`Error::KeyEncrypted`]: only `worker-release` decrypts keys).
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_secret_file(path)?;
        if is_encrypted_key_file(&text) {
            return Err(Error::KeyEncrypted {
                path: path.to_owned(),
            });
        }
        Self::from_key_file(&text, path)
    }

    /// Parses the contents of a plain private key file (`path` names it in errors).
    pub fn from_key_file(text: &[u8], path: &Path) -> Result<Self> {
        let file: PrivateKeyFile = serde_json::from_slice(text).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?;
        if file.scheme != SCHEME_ED25519 {
            return Err(Error::UnknownScheme {
                keyid: file.keyid,
                scheme: file.scheme,
            });
        }
        let seed = Zeroizing::new(decode_hex::<32>("private", &file.private)?);
        let key = Self::from_seed(&file.name, &seed);
        if key.keyid() != file.keyid {
            return Err(Error::malformed(
                format!("{}: keyid", path.display()),
                "does not match the private key",
            ));
        }
        Ok(key)
    }

    /// The contents of this key's plain private key file (what [`PrivateKey::write_pair`]
    /// writes, and what an encrypted key file encrypts).
    pub fn key_file(&self) -> Result<Zeroizing<Vec<u8>>> {
        let private = PrivateKeyFile {
            keyid: self.keyid(),
            name: self.name.clone(),
            scheme: SCHEME_ED25519.to_owned(),
            private: Zeroizing::new(hex::encode(self.signing.to_bytes())),
        };
        let mut body =
            Zeroizing::new(
                serde_json::to_vec_pretty(&private).map_err(|source| Error::Json {
                    what: format!("{}.key", self.name),
                    source,
                })?,
            );
        body.push(b'\n');
        Ok(body)
    }

    /// Writes `NAME.key` (mode 0600, never overwriting) and `NAME.pub` into `dir`.
    pub fn write_pair(&self, dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        self.write_pair_as(dir, &self.key_file()?)
    }

    /// Writes `NAME.key` with the contents `key_file` (this key's plain key file, or it
    /// encrypted) (mode 0600, never overwriting) and `NAME.pub` into `dir`.
    pub fn write_pair_as(
        &self,
        dir: &Path,
        key_file: &[u8],
    ) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let key_path = dir.join(format!("{}.key", self.name));
        let pub_path = dir.join(format!("{}.pub", self.name));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| Error::io(&key_path, e))?;
        file.write_all(key_file)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&key_path, e))?;
        let mut public =
            serde_json::to_vec_pretty(&self.public()).map_err(|source| Error::Json {
                what: pub_path.display().to_string(),
                source,
            })?;
        public.push(b'\n');
        fs::write(&pub_path, public).map_err(|e| Error::io(&pub_path, e))?;
        Ok((key_path, pub_path))
    }
}

/// Reads a secret file (a private key, a passphrase file) after [`check_secret_file`].
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    check_secret_file(path)?;
    Ok(Zeroizing::new(
        fs::read(path).map_err(|e| Error::io(path, e))?,
    ))
}

/// Refuses a secret file (a private key, a token file) that group or others can access
/// ([`Error::KeyPermissions`], with its mode): the one check every secret file passes.
pub fn check_secret_file(path: &Path) -> Result<()> {
    let metadata = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}
