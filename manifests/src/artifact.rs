//! Streaming artifact verification: hash while the bytes go by, cut at the signed size.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::documents::Artifact;
use crate::error::{Error, Result};

/// Hashes an artifact as it streams and refuses one byte more than the signed size.
#[derive(Debug, Clone)]
pub struct ArtifactVerifier {
    what: String,
    expected_sha256: String,
    expected_size: u64,
    hasher: Sha256,
    seen: u64,
}

impl ArtifactVerifier {
    /// A verifier for `artifact`; `what` (a path or URL) names it in errors.
    pub fn new(artifact: &Artifact, what: impl Into<String>) -> Self {
        ArtifactVerifier {
            what: what.into(),
            expected_sha256: artifact.sha256.clone(),
            expected_size: artifact.size,
            hasher: Sha256::new(),
            seen: 0,
        }
    }

    /// Feeds the next chunk; fails as soon as the stream exceeds the signed size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        let total = self.seen.saturating_add(chunk.len() as u64);
        if total > self.expected_size {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.expected_size,
                actual: total,
            });
        }
        self.hasher.update(chunk);
        self.seen = total;
        Ok(())
    }

    /// Bytes seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.expected_size - self.seen
    }

    /// Checks the complete stream: exact size, then hash.
    pub fn finish(self) -> Result<()> {
        if self.seen != self.expected_size {
            return Err(Error::SizeMismatch {
                what: self.what,
                expected: self.expected_size,
                actual: self.seen,
            });
        }
        let actual = hex::encode(self.hasher.finalize());
        if actual != self.expected_sha256 {
            return Err(Error::HashMismatch {
                what: self.what,
                expected: self.expected_sha256,
                actual,
            });
        }
        Ok(())
    }
}

/// Verifies a file on disk against a signed artifact entry, streaming.
pub fn verify_file(path: &Path, artifact: &Artifact) -> Result<()> {
    let mut verifier = ArtifactVerifier::new(artifact, path.display().to_string());
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        verifier.update(&buffer[..read])?;
    }
    verifier.finish()
}

/// Streams a file and returns its hex SHA-256 and size.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}
