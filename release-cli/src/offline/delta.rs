//! `sign-release --delta-from OLD_BINARY`: one patch per earlier build, listed in the signed
//! artifact of its platform (`deltas`), written next to `--out` for `publish --artifact`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use manifests::{hash_file, Artifact, Delta, Version};

use super::artifact;
use crate::failure::refuse;

/// Computes a patch from each `bases` file to the artifact of its platform (`artifacts[i]`,
/// read from `paths[i]`) and lists it there. A base's version and platform come from its build
/// marker; it must be older than `version` and its platform one of the release's.
pub fn add_deltas(
    bases: &[PathBuf],
    artifacts: &mut [Artifact],
    paths: &[PathBuf],
    version: &Version,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut written = Vec::new();
    for base in bases {
        let build = artifact::agent_build(base)?.ok_or_else(|| {
            refuse(
                "usage",
                format!(
                    "--delta-from {}: not a worker-agent binary with a build marker (its version \
                     and platform are read from it)",
                    base.display()
                ),
            )
        })?;
        let base_version: Version = build
            .version
            .parse()
            .with_context(|| format!("--delta-from {}: version", base.display()))?;
        if base_version >= *version {
            return Err(refuse(
                "usage",
                format!(
                    "--delta-from {}: version {base_version} is not older than --version {version}",
                    base.display()
                ),
            ));
        }
        let Some(index) = artifacts.iter().position(|a| a.platform == build.target) else {
            return Err(refuse(
                "usage",
                format!(
                    "--delta-from {}: built for {}, which no --artifact of this release is",
                    base.display(),
                    build.target
                ),
            ));
        };
        let (base_sha256, _) = hash_file(base)?;
        let base_bytes =
            std::fs::read(base).with_context(|| format!("reading {}", base.display()))?;
        let target = &paths[index];
        let patch_path = dir.join(format!(
            "delta-{base_version}-to-{version}-{}.zst",
            build.target
        ));
        let started = std::time::Instant::now();
        {
            let input = BufReader::new(
                File::open(target).with_context(|| format!("opening {}", target.display()))?,
            );
            let output = BufWriter::new(
                File::create(&patch_path)
                    .with_context(|| format!("creating {}", patch_path.display()))?,
            );
            manifests::make_patch(
                &base_bytes,
                input,
                artifacts[index].size,
                manifests::PATCH_LEVEL,
                output,
            )
            .with_context(|| format!("patch {} -> {}", base.display(), target.display()))?;
        }
        let (patch_sha256, patch_size) = hash_file(&patch_path)?;
        // Prove the patch before signing it: it must rebuild exactly the signed artifact.
        manifests::apply_patch(
            &base_bytes,
            BufReader::new(File::open(&patch_path)?),
            &artifacts[index],
            std::io::sink(),
            &mut |_| {},
        )
        .with_context(|| format!("checking the patch {}", patch_path.display()))?;
        let artifact = &mut artifacts[index];
        println!(
            "delta {base_version} -> {version} ({}): {} ({patch_size} of {} bytes, {:.2}%, {:.1} s)",
            artifact.platform,
            patch_path.display(),
            artifact.size,
            patch_size as f64 * 100.0 / artifact.size.max(1) as f64,
            started.elapsed().as_secs_f64()
        );
        artifact.deltas.push(Delta {
            base_version,
            base_sha256,
            url: format!("/api/worker-updates/artifacts/{patch_sha256}"),
            patch_sha256,
            patch_size,
            extra: Default::default(),
        });
        written.push(patch_path);
    }
    Ok(written)
}
