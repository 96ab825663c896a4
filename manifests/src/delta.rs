//! Binary patches between two artifacts: a zstd frame compressed with the base artifact as its
//! reference prefix (what `zstd --patch-from` does), so the bytes the two builds share cost
//! almost nothing. Chosen over bsdiff (measured in `wiki/benchmarks/update.md`): a similar size
//! on consecutive builds, a streaming decoder (bsdiff crates hold old, new and patch in memory)
//! and a checksummed, well-kept format.
//!
//! No file I/O here: the caller opens the files and passes the base bytes, readers and writers.

use std::io::{self, Read, Write};

use crate::artifact::ArtifactVerifier;
use crate::documents::Artifact;

/// The compression level `worker-release sign-release --delta-from` uses: high, because a
/// patch is made once per release and downloaded by the whole fleet.
pub const PATCH_LEVEL: i32 = 19;

/// The largest zstd window (2 GiB): no base plus target may be larger.
const MAX_WINDOW_LOG: u32 = 31;

/// Why a patch could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The patch is not a valid zstd frame for this base (corrupt, truncated, another base,
    /// or asking for a larger window than the signed sizes allow).
    #[error("patch does not decode against the base: {0}")]
    Decode(io::Error),
    /// The patched result is not the signed artifact (size or hash).
    #[error("patched result does not verify: {0}")]
    Result(Box<crate::error::Error>),
    /// Reading the target or writing the patch or the result failed.
    #[error("{what}: {source}")]
    Io {
        /// Which step.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// Base and target together exceed the largest zstd window.
    #[error("base ({base} bytes) and target ({target} bytes) exceed the 2 GiB patch window")]
    TooLarge {
        /// Base size.
        base: u64,
        /// Target size.
        target: u64,
    },
}

impl From<crate::error::Error> for DeltaError {
    fn from(error: crate::error::Error) -> Self {
        DeltaError::Result(Box::new(error))
    }
}

/// The window log a patch from `base` bytes to `target` bytes needs: both must fit in the
/// window so that every match into the base is reachable.
fn window_log(base: u64, target: u64) -> Result<u32, DeltaError> {
    let span = base.saturating_add(target).max(1 << 10);
    let log = 64 - (span - 1).leading_zeros();
    if log > MAX_WINDOW_LOG {
        return Err(DeltaError::TooLarge { base, target });
    }
    Ok(log.max(10))
}

/// Writes a patch turning `base` into the `target_size` bytes read from `target`, into `out`.
pub fn make_patch(
    base: &[u8],
    target: impl Read,
    target_size: u64,
    level: i32,
    out: impl Write,
) -> Result<(), DeltaError> {
    let log = window_log(base.len() as u64, target_size)?;
    let io = |what| move |source| DeltaError::Io { what, source };
    let mut encoder = zstd::stream::write::Encoder::with_ref_prefix(out, level, base)
        .map_err(io("starting the patch"))?;
    encoder
        .window_log(log)
        .map_err(io("setting the patch window"))?;
    encoder
        .long_distance_matching(true)
        .map_err(io("enabling long-distance matching"))?;
    encoder
        .include_checksum(true)
        .map_err(io("enabling the frame checksum"))?;
    encoder
        .set_pledged_src_size(Some(target_size))
        .map_err(io("declaring the target size"))?;
    let mut target = target.take(target_size);
    io::copy(&mut target, &mut encoder).map_err(io("compressing the target"))?;
    encoder
        .finish()
        .map_err(io("finishing the patch"))?
        .flush()
        .map_err(io("writing the patch"))?;
    Ok(())
}

/// Applies `patch` to `base`, streaming the result into `out` and verifying it against the
/// signed `result` (cut at its size, then hashed) as it goes; `on_chunk` is told every chunk's
/// length. Memory is the base plus a window bounded by the signed sizes, whatever the patch
/// asks for. On error `out` holds a prefix of unverified bytes: the caller deletes it.
pub fn apply_patch(
    base: &[u8],
    patch: impl Read,
    result: &Artifact,
    mut out: impl Write,
    on_chunk: &mut dyn FnMut(u64),
) -> Result<(), DeltaError> {
    let log = window_log(base.len() as u64, result.size)?;
    let mut decoder = zstd::stream::read::Decoder::with_ref_prefix(io::BufReader::new(patch), base)
        .map_err(DeltaError::Decode)?;
    decoder.window_log_max(log).map_err(DeltaError::Decode)?;
    let mut verifier = ArtifactVerifier::new(result, "patched result");
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DeltaError::Decode(e)),
        };
        verifier.update(&buffer[..read])?;
        out.write_all(&buffer[..read])
            .map_err(|source| DeltaError::Io {
                what: "writing the patched result",
                source,
            })?;
        on_chunk(read as u64);
    }
    verifier.finish()?;
    out.flush().map_err(|source| DeltaError::Io {
        what: "writing the patched result",
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    fn artifact_of(bytes: &[u8]) -> Artifact {
        Artifact {
            platform: "x86_64-unknown-linux-gnu".into(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            url: "a".into(),
            mirrors: Vec::new(),
            deltas: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// Pseudo-random bytes (incompressible on their own), so only the base makes a patch small.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn patch(base: &[u8], target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        make_patch(base, target, target.len() as u64, 3, &mut out).expect("patch");
        out
    }

    #[test]
    fn a_patch_of_a_small_change_is_small_and_rebuilds_the_target() {
        let base = noise(4 << 20, 7);
        let mut target = base.clone();
        target[1 << 20..(1 << 20) + 64].copy_from_slice(&noise(64, 9));
        target.extend_from_slice(b"a new tail");
        let p = patch(&base, &target);
        assert!(p.len() < 4096, "patch of {} bytes", p.len());
        let mut out = Vec::new();
        apply_patch(&base, &p[..], &artifact_of(&target), &mut out, &mut |_| {}).expect("apply");
        assert_eq!(out, target);
    }

    #[test]
    fn a_tampered_truncated_or_foreign_patch_is_refused() {
        let base = noise(1 << 20, 3);
        let mut target = base.clone();
        target[500..520].fill(0);
        let good = patch(&base, &target);
        let expected = artifact_of(&target);
        let apply = |base: &[u8], p: &[u8]| {
            apply_patch(base, p, &expected, &mut Vec::new(), &mut |_| {})
                .expect_err("must be refused")
        };
        let mut tampered = good.clone();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0xff;
        apply(&base, &tampered);
        apply(&base, &good[..good.len() - 5]);
        apply(&noise(1 << 20, 4), &good);
    }
}
