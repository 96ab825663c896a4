//! Checks `sign-release` makes before signing: the platform names, and what a worker-agent
//! artifact says it is, read from the build marker the agent embeds
//! (`agent/src/child.rs`: `\0worker-agent-build:VERSION;TARGET\0`), without running it: the
//! artifact may be built for another machine, and running a file about to be signed on the
//! offline signing machine is what this tool should never need.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::failure::refuse;

/// Architectures a platform's first component may name.
const ARCHES: &[&str] = &[
    "x86_64",
    "i686",
    "i586",
    "aarch64",
    "arm",
    "armv7",
    "riscv64gc",
    "powerpc64le",
    "s390x",
    "loongarch64",
];
/// Operating systems a platform's third component may name.
const SYSTEMS: &[&str] = &[
    "linux", "darwin", "windows", "freebsd", "netbsd", "openbsd", "illumos", "android",
];

/// Refuses a platform that is not a target triple `ARCH-VENDOR-OS[-ENV]`: a known architecture
/// and operating system, lower-case components of letters, digits and `_` (what `rustc
/// --print target-list` names look like), so a typo never ships an artifact no agent asks for.
pub fn check_platform(platform: &str) -> Result<()> {
    let parts: Vec<&str> = platform.split('-').collect();
    let shaped = (3..=4).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !shaped || !ARCHES.contains(&parts[0]) || !SYSTEMS.contains(&parts[2]) {
        return Err(refuse(
            "usage",
            format!(
                "--artifact platform {platform:?} is not a target triple ARCH-VENDOR-OS[-ENV] \
                 such as x86_64-unknown-linux-gnu (architectures: {}; systems: {})",
                ARCHES.join(", "),
                SYSTEMS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What a worker-agent binary says it is.
#[derive(Debug, PartialEq, Eq)]
pub struct AgentBuild {
    /// Its `--version`.
    pub version: String,
    /// The target it was built for.
    pub target: String,
}

/// The longest marker value read after the prefix.
const MAX_VALUE: usize = 200;

/// Reads the worker-agent build marker, streaming the file; `None` when it is not a worker-agent
/// binary (or one older than the marker). Two different markers are refused.
pub fn agent_build(path: &Path) -> Result<Option<AgentBuild>> {
    // Built at run time so this binary does not itself hold the marker's opening bytes.
    let mut prefix = vec![0u8];
    prefix.extend_from_slice(b"worker-agent-build:");
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let keep = prefix.len() + MAX_VALUE;
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut found: Option<AgentBuild> = None;
    loop {
        let n = file
            .read(&mut chunk)
            .with_context(|| format!("reading {}", path.display()))?;
        let end = n == 0;
        window.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(at) = find(&window[start..], &prefix) {
            let value_at = start + at + prefix.len();
            let Some(len) = window[value_at..]
                .iter()
                .take(MAX_VALUE)
                .position(|b| *b == 0)
            else {
                if end || window.len() - value_at >= MAX_VALUE {
                    start = value_at; // not a marker: no terminator
                    continue;
                }
                break; // the rest comes with the next chunk
            };
            if let Some(build) = parse(&window[value_at..value_at + len]) {
                match &found {
                    Some(seen) if *seen != build => {
                        return Err(refuse(
                            "artifact_mismatch",
                            format!(
                                "{}: two worker-agent build markers ({} for {} and {} for {})",
                                path.display(),
                                seen.version,
                                seen.target,
                                build.version,
                                build.target
                            ),
                        ))
                    }
                    _ => found = Some(build),
                }
            }
            start = value_at + len;
        }
        if end {
            return Ok(found);
        }
        let from = window
            .len()
            .saturating_sub(keep)
            .max(start.min(window.len()));
        window.drain(..from);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse(value: &[u8]) -> Option<AgentBuild> {
    let text = std::str::from_utf8(value).ok()?;
    let (version, target) = text.split_once(';')?;
    version.parse::<manifests::Version>().ok()?;
    Some(AgentBuild {
        version: version.to_owned(),
        target: target.to_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        for ok in [
            "x86_64-unknown-linux-gnu",
            "aarch64-unknown-linux-musl",
            "x86_64-apple-darwin",
        ] {
            check_platform(ok).unwrap();
        }
        for bad in [
            "x86-64-unknown-linux-gnu",
            "linux-x86_64",
            "x86_64-unknown-linux-gnu ",
            "X86_64-unknown-linux-gnu",
            "x86_64-unknown-lniux-gnu",
        ] {
            assert!(check_platform(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn marker_across_a_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent");
        let mut bytes = vec![7u8; (1 << 20) - 5];
        bytes.extend_from_slice(b"\0worker-agent-build:2.0.0;x86_64-unknown-linux-gnu\0tail");
        std::fs::write(&path, &bytes).unwrap();
        let build = agent_build(&path).unwrap().unwrap();
        assert_eq!(build.version, "2.0.0");
        assert_eq!(build.target, "x86_64-unknown-linux-gnu");
        std::fs::write(dir.path().join("other"), b"not an agent").unwrap();
        assert_eq!(agent_build(&dir.path().join("other")).unwrap(), None);
    }
}
