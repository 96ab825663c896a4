//! Passphrase-encrypted private key files: `worker-release keygen --encrypt` writes one, and
//! every command that signs ([`load_private`]) opens one transparently.
//!
//! The format: the plain key file of [`manifests::PrivateKey::key_file`], encrypted with age to a
//! passphrase (the scrypt recipient, work factor calibrated by age to about a second) and ASCII
//! armoured, mode 0600 like every key file. `manifests` tells an encrypted file from a plain one
//! ([`manifests::is_encrypted_key_file`]); only this module encrypts and decrypts, so the format
//! crate (and the update server, which refuses an encrypted online key) needs no age.
//!
//! The passphrase comes from the file named by [`PASSPHRASE_FILE_ENV`] (its first line; the file
//! must be mode 0600 like a key), else from a prompt on the terminal. With neither, the command
//! fails at once naming the variable: it never waits on a standard input that is no terminal.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::{Context, Result};
use manifests::PrivateKey;
use zeroize::Zeroizing;

use crate::failure::refuse;

/// The environment variable naming a file whose first line is the passphrase (for scripts).
pub const PASSPHRASE_FILE_ENV: &str = "WORKER_RELEASE_PASSPHRASE_FILE";

/// Where a passphrase came from, to say so when it does not open a key.
enum Source {
    File(PathBuf),
    Terminal,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(path) => format!("{PASSPHRASE_FILE_ENV} {}", path.display()),
            Source::Terminal => "typed at the prompt".to_owned(),
        }
    }
}

/// The passphrase, from [`PASSPHRASE_FILE_ENV`] or the terminal (`confirm`: asked twice).
fn passphrase(prompt: &str, confirm: bool) -> Result<(SecretString, Source)> {
    if let Some(path) = std::env::var_os(PASSPHRASE_FILE_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let bytes = manifests::read_secret_file(&path)
            .with_context(|| format!("{PASSPHRASE_FILE_ENV} {}", path.display()))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            refuse(
                "passphrase_required",
                format!(
                    "{PASSPHRASE_FILE_ENV} {}: the passphrase is not UTF-8 text",
                    path.display()
                ),
            )
        })?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(refuse(
                "passphrase_required",
                format!(
                    "{PASSPHRASE_FILE_ENV} {}: the first line (the passphrase) is empty",
                    path.display()
                ),
            ));
        }
        return Ok((SecretString::from(line.to_owned()), Source::File(path)));
    }
    if !std::io::stdin().is_terminal() {
        return Err(refuse(
            "passphrase_required",
            format!(
                "{prompt}: a passphrase is needed and there is no terminal to ask on; set \
                 {PASSPHRASE_FILE_ENV} to a file (mode 0600) whose first line is the passphrase"
            ),
        ));
    }
    let typed = Zeroizing::new(
        rpassword::prompt_password(format!("{prompt}: "))
            .context("reading the passphrase from the terminal")?,
    );
    if typed.is_empty() {
        return Err(refuse("passphrase_required", "the passphrase is empty"));
    }
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("the same passphrase again: ")
                .context("reading the passphrase from the terminal")?,
        );
        if *again != *typed {
            return Err(refuse(
                "usage",
                "the two passphrases differ; nothing was written",
            ));
        }
    }
    Ok((SecretString::from(typed.to_string()), Source::Terminal))
}

/// The contents of an encrypted key file for `key`, asking for a new passphrase.
pub fn encrypted_key_file(key: &PrivateKey) -> Result<Vec<u8>> {
    let (passphrase, _) = passphrase(&format!("new passphrase for key {}", key.name()), true)?;
    let plain = key.key_file()?;
    let encryptor = age::Encryptor::with_user_passphrase(passphrase);
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .context("encrypting the key")?;
    let mut writer = encryptor.wrap_output(armor).context("encrypting the key")?;
    writer.write_all(&plain).context("encrypting the key")?;
    writer
        .finish()
        .and_then(age::armor::ArmoredWriter::finish)
        .context("encrypting the key")?;
    Ok(out)
}

/// Loads a private key file, decrypting it when it is passphrase-encrypted.
pub fn load_private(path: &Path) -> Result<PrivateKey> {
    let text = manifests::read_secret_file(path)?;
    if !manifests::is_encrypted_key_file(&text) {
        return Ok(PrivateKey::from_key_file(&text, path)?);
    }
    let (passphrase, source) = passphrase(&format!("passphrase for {}", path.display()), false)?;
    let plain = decrypt(&text, &passphrase).map_err(|error| match error {
        age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => refuse(
            "wrong_passphrase",
            format!(
                "--key {}: the passphrase ({}) does not open this encrypted key",
                path.display(),
                source.describe()
            ),
        ),
        other => refuse(
            "malformed",
            format!(
                "--key {}: not a readable encrypted key file: {other}",
                path.display()
            ),
        ),
    })?;
    Ok(PrivateKey::from_key_file(&plain, path)?)
}

fn decrypt(
    text: &[u8],
    passphrase: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, age::DecryptError> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(text))?;
    let identity = age::scrypt::Identity::new(passphrase.clone());
    let mut reader = decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))?;
    let mut plain = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut plain)?;
    Ok(plain)
}
