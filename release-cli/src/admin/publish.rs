//! `publish` (a signed release and its artifacts) and `publish-root` (a signed root rotation).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use manifests::{hash_file, Artifact, Release, Root, Signed};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::client::{Server, ServerArgs};
use super::output::text;

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The signed release document (from `worker-release sign-release`).
    release: PathBuf,
    /// An artifact file of the release to upload, matched to the release by its sha256.
    #[arg(long = "artifact")]
    artifacts: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishRootArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The signed root N+1 (from `worker-release rotate-root`).
    root: PathBuf,
    /// Let the server accept a root that removes a key or lowers a threshold (it refuses one
    /// otherwise, `409 weaker_root`).
    #[arg(long)]
    allow_weaker: bool,
}

pub fn publish(args: PublishArgs) -> Result<()> {
    let bytes = std::fs::read(&args.release)
        .with_context(|| format!("reading {}", args.release.display()))?;
    let doc = Signed::<Release>::from_slice(&bytes)
        .with_context(|| format!("release document {}", args.release.display()))?;
    let release = &doc.signed;
    // Match every artifact to the release before publishing anything: a wrong path then fails
    // without leaving a half-published release behind.
    let mut uploads: Vec<(&Path, Artifact)> = Vec::new();
    for path in &args.artifacts {
        let (sha256, size) = hash_file(path)?;
        let artifact = release
            .artifacts
            .iter()
            .find(|a| a.sha256 == sha256 && a.size == size)
            .cloned()
            .or_else(|| patch_of(release, &sha256, size))
            .ok_or_else(|| {
                anyhow!(
                    "--artifact {}: sha256 {sha256} ({size} bytes) is not an artifact or delta of release {} ({})",
                    path.display(),
                    release.version,
                    release
                        .artifacts
                        .iter()
                        .map(|a| format!("{}={}", a.platform, a.sha256))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        uploads.push((path, artifact));
    }

    let server = Server::new(&args.server)?;
    let what = format!("publish release {}", release.version);
    let (status, answer) = server.send(
        &what,
        server
            .client
            .post(server.endpoint(&["api", "admin", "releases"]))
            .header(CONTENT_TYPE, "application/json")
            .body(bytes.clone()),
    )?;
    println!(
        "release {}: {} (manifest_sha256 {})",
        release.version,
        if status == 201 {
            "published"
        } else if answer.get("resigned").and_then(Value::as_bool) == Some(true) {
            "already published; its signatures replaced by these (re-signed)"
        } else {
            "already published, identical"
        },
        text(&answer, "manifest_sha256")
    );

    // The answer lists what the server still lacks; an artifact it already holds is not re-sent.
    let lacking = answer
        .get("missing_artifacts")
        .and_then(Value::as_array)
        .map(|_| string_list(answer.get("missing_artifacts")));
    for (path, artifact) in &uploads {
        // A delta is never in `missing_artifacts` (a release is complete without its deltas):
        // always sent, the server answers 200 when it already holds it.
        let is_delta = !release
            .artifacts
            .iter()
            .any(|a| a.sha256 == artifact.sha256);
        let stored = if !is_delta
            && lacking
                .as_ref()
                .is_some_and(|lacking| !lacking.contains(&artifact.sha256))
        {
            "already stored"
        } else {
            let what = format!("upload {} ({})", path.display(), artifact.platform);
            let url = server.endpoint(&["api", "admin", "artifacts", &artifact.sha256]);
            match server.upload(&what, &url, path, artifact.size)? {
                201 => "stored",
                _ => "already stored",
            }
        };
        println!(
            "{} {}: {stored} ({}, {} bytes)",
            if is_delta { "delta" } else { "artifact" },
            artifact.platform,
            path.display(),
            artifact.size
        );
    }

    // Completeness, as the server sees it now (other machines may have uploaded artifacts too).
    let (_, listing) = server.send(
        &format!("list releases (after publishing {})", release.version),
        server
            .client
            .get(server.endpoint(&["api", "admin", "releases"])),
    )?;
    let version = release.version.to_string();
    let missing = missing_from_listing(&listing, &version).unwrap_or_else(|| {
        // Not in the listing (should not happen): what the publish answer said, minus uploads.
        string_list(answer.get("missing_artifacts"))
            .into_iter()
            .filter(|sha| !uploads.iter().any(|(_, a)| &a.sha256 == sha))
            .collect()
    });
    let total = release.artifacts.len();
    if missing.is_empty() {
        println!("release {version} is complete: all {total} artifact(s) are stored");
    } else {
        println!(
            "release {version} is INCOMPLETE: {} of {total} artifact(s) missing:",
            missing.len()
        );
        for sha in &missing {
            let platform = release
                .artifacts
                .iter()
                .find(|a| &a.sha256 == sha)
                .map_or("?", |a| a.platform.as_str());
            println!("  {platform} sha256 {sha}");
        }
        println!(
            "upload them with: worker-release publish {} --artifact PATH",
            args.release.display()
        );
    }
    Ok(())
}

pub fn publish_root(args: PublishRootArgs) -> Result<()> {
    let path = &args.root;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let doc = Signed::<Root>::from_slice(&bytes)
        .with_context(|| format!("root document {}", path.display()))?;
    let server = Server::new(&args.server)?;
    let what = format!("publish root {}", doc.signed.version);
    let mut url = server.endpoint(&["api", "admin", "roots"]);
    if args.allow_weaker {
        url.query_pairs_mut().append_pair("allow_weaker", "true");
    }
    let (status, answer) = server.send(
        &what,
        server
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(bytes),
    )?;
    println!(
        "root version {}: {}",
        text(&answer, "version"),
        if status == 201 {
            "published"
        } else {
            "already published (nothing changed)"
        }
    );
    Ok(())
}

/// The patch of one of `release`'s deltas with this hash and size, as an upload.
fn patch_of(release: &Release, sha256: &str, size: u64) -> Option<Artifact> {
    release.artifacts.iter().find_map(|a| {
        a.deltas
            .iter()
            .find(|d| d.patch_sha256 == sha256 && d.patch_size == size)
            .map(|d| d.patch_artifact(&a.platform))
    })
}

/// The `missing_artifacts` of `version` in a `GET /api/admin/releases` answer.
fn missing_from_listing(listing: &Value, version: &str) -> Option<Vec<String>> {
    listing
        .get("releases")?
        .as_array()?
        .iter()
        .find(|r| r.get("version").and_then(Value::as_str) == Some(version))
        .map(|r| string_list(r.get("missing_artifacts")))
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_artifacts_from_listing() {
        let listing = json!({"releases": [
            {"version": "1.3.2", "complete": true, "missing_artifacts": []},
            {"version": "1.4.0", "complete": false, "missing_artifacts": ["ab", "cd"]}
        ]});
        assert_eq!(
            missing_from_listing(&listing, "1.4.0"),
            Some(vec!["ab".to_owned(), "cd".to_owned()])
        );
        assert_eq!(missing_from_listing(&listing, "1.3.2"), Some(vec![]));
        assert_eq!(missing_from_listing(&listing, "9.9.9"), None);
    }
}
