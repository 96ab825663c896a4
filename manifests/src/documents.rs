//! The `release`, `channel` and `rollback` documents.

use std::collections::{BTreeMap, BTreeSet};

use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::doc_type::DocType;
use crate::error::{Error, Result};
use crate::keys::decode_hex;
use crate::signed::Document;
use crate::timestamp::Timestamp;

/// The product name agents accept releases for.
pub const PRODUCT: &str = "worker-agent";

/// One release of the product, signed offline by the `release` role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Release {
    /// Always `release`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "release"))]
    pub doc_type: DocType,
    /// The software this is a release of (`worker-agent`): an agent refuses any other.
    pub product: String,
    /// The release's semantic version.
    pub version: Version,
    /// When the release engineer signed it.
    pub released_at: Timestamp,
    /// The oldest version allowed to update straight to this one; older agents must hop.
    pub minimum_version: Version,
    /// One executable per platform.
    pub artifacts: Vec<Artifact>,
    /// Free-form release notes.
    pub notes: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One downloadable executable of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Artifact {
    /// Rust target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub platform: String,
    /// Hex SHA-256 of the file.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// Exact size in bytes: downloads are cut at this many bytes.
    pub size: u64,
    /// Where to fetch it: absolute, or relative to the update server's URL.
    pub url: String,
    /// Mirrors serving the very same bytes (any CDN or object store answering a plain GET):
    /// absolute `http(s)://` URLs, tried in this order before `url` and the update server's own
    /// copy. Signed like the rest, but trusted for nothing: every byte is checked against
    /// `sha256` and `size` whatever its source. Absent (never an empty list, which parsing
    /// refuses so that every accepted document prints back to the same canonical bytes) when
    /// the release names none; documents from before the field stay valid.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty_list"
    )]
    #[schemars(length(min = 1))]
    pub mirrors: Vec<String>,
    /// Patches that turn an earlier version's artifact into this one (`sign-release
    /// --delta-from`); the result of each is this artifact (`sha256`, `size`). Omitted when
    /// empty, so documents without deltas keep their form and their signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The most mirrors one artifact may name (a release is metadata an agent reads whole).
pub const MAX_MIRRORS: usize = 16;

/// A present `mirrors` list: one entry at least (an empty one would not survive printing, as
/// an absent list is not printed, and its signature would no longer verify).
fn non_empty_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(deserializer)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "mirrors is an empty list: leave the field out instead",
        ));
    }
    Ok(list)
}

impl Artifact {
    /// `mirrors` are absolute `http://` or `https://` URLs, distinct, at most [`MAX_MIRRORS`].
    fn validate_mirrors(&self, index: usize) -> Result<()> {
        if self.mirrors.len() > MAX_MIRRORS {
            return Err(Error::malformed(
                format!("artifacts[{index}].mirrors"),
                format!("{} mirrors, at most {MAX_MIRRORS}", self.mirrors.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (at, mirror) in self.mirrors.iter().enumerate() {
            let field = || format!("artifacts[{index}].mirrors[{at}]");
            let rest = mirror
                .strip_prefix("https://")
                .or_else(|| mirror.strip_prefix("http://"));
            if rest.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
                return Err(Error::malformed(
                    field(),
                    format!("{mirror:?} is not an absolute http:// or https:// URL"),
                ));
            }
            if !seen.insert(mirror.as_str()) {
                return Err(Error::malformed(
                    field(),
                    format!("{mirror:?} listed twice"),
                ));
            }
        }
        Ok(())
    }
}

/// A signed patch from one earlier artifact (the base) to the artifact that lists it: a zstd
/// frame compressed with the base as its reference prefix ([`crate::apply_patch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Delta {
    /// The version whose artifact is the base.
    pub base_version: Version,
    /// Hex SHA-256 of the base: an agent uses the patch only when its installed file has it.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub base_sha256: String,
    /// Hex SHA-256 of the patch file.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub patch_sha256: String,
    /// Exact size of the patch in bytes: downloads are cut at this many bytes.
    pub patch_size: u64,
    /// Where to fetch the patch: absolute, or relative to the update server's URL.
    pub url: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Delta {
    /// The patch file as a downloadable artifact entry (its own hash and size), so the
    /// streaming verification and the server's upload path apply to it unchanged.
    pub fn patch_artifact(&self, platform: &str) -> Artifact {
        Artifact {
            platform: platform.to_owned(),
            sha256: self.patch_sha256.clone(),
            size: self.patch_size,
            url: self.url.clone(),
            mirrors: Vec::new(),
            deltas: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

impl Document for Release {
    const TYPE: DocType = DocType::Release;

    fn declared_type(&self) -> DocType {
        self.doc_type
    }
}

impl Release {
    /// Structural checks beyond parsing: artifact hashes are hex, platforms are distinct.
    pub fn validate(&self) -> Result<()> {
        if self.product.is_empty() {
            return Err(Error::malformed("product", "empty"));
        }
        let mut platforms = BTreeSet::new();
        for (index, artifact) in self.artifacts.iter().enumerate() {
            decode_hex::<32>(&format!("artifacts[{index}].sha256"), &artifact.sha256)?;
            if !platforms.insert(artifact.platform.as_str()) {
                return Err(Error::malformed(
                    format!("artifacts[{index}].platform"),
                    format!("platform {} listed twice", artifact.platform),
                ));
            }
            artifact.validate_mirrors(index)?;
            let mut bases = BTreeSet::new();
            for (d, delta) in artifact.deltas.iter().enumerate() {
                let field = format!("artifacts[{index}].deltas[{d}]");
                decode_hex::<32>(&format!("{field}.base_sha256"), &delta.base_sha256)?;
                decode_hex::<32>(&format!("{field}.patch_sha256"), &delta.patch_sha256)?;
                if delta.base_sha256 == artifact.sha256 || !bases.insert(&delta.base_sha256) {
                    return Err(Error::malformed(
                        format!("{field}.base_sha256"),
                        "base is the artifact itself or listed twice",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The artifact for `platform`, if the release has one.
    pub fn artifact_for(&self, platform: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.platform == platform)
    }
}

/// A channel statement: which release a channel offers right now, to whom, until when. Signed
/// online by the `channel` role (the update server), short-lived, with a serial that only grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelStatement {
    /// Always `channel`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "channel"))]
    pub doc_type: DocType,
    /// The channel name, e.g. `canary` or `stable`.
    pub channel: String,
    /// Strictly increasing per channel; agents refuse a lower one (replay).
    pub serial: u64,
    /// When the server signed it.
    pub issued_at: Timestamp,
    /// Agents refuse the statement after this (freeze attack); default 24 h after issue.
    pub expires: Timestamp,
    /// The release the channel points to.
    pub release: ReleasePointer,
    /// Which share of the fleet is offered the release.
    pub rollout: Rollout,
    /// Agents below this version are told they must update before serving.
    pub minimum_version: Version,
    /// The version operators want the channel on.
    pub recommended_version: Version,
    /// A halted channel offers no update to anyone.
    pub halted: bool,
    /// Apply even after the maximum busy deferral has elapsed.
    pub urgent: bool,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The release a channel statement pins, by version and by hash of its signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleasePointer {
    /// The release version.
    pub version: Version,
    /// Hex SHA-256 of the canonical JSON of the release document's `signed` part.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub manifest_sha256: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A staged rollout: the share of workers offered the release, and the salt of the cohort hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rollout {
    /// 0 to 100.
    #[schemars(range(max = 100))]
    pub percent: u8,
    /// Fixed for one release, so raising the percentage only ever adds workers.
    pub salt: String,
    /// The current wave of a rollout plan (`worker-release rollout plan`, and every promote's
    /// first wave): workers named here are offered the release besides the `percent` cohort.
    /// Absent when the channel does not roll out in waves. Signed like the rest, so a worker
    /// outside the wave is told "not yet" by the statement, not by the server's say-so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<Wave>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The most workers a wave may name (bounds the statement every agent downloads).
pub const MAX_WAVE_WORKERS: usize = 1000;

/// A wave of a staged rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Wave {
    /// This wave's number, from 1.
    #[schemars(range(min = 1))]
    pub number: u32,
    /// How many waves the plan has.
    #[schemars(range(min = 1))]
    pub of: u32,
    /// Worker ids offered the release by name (the first waves: an exact, small set), sorted
    /// and distinct.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub workers: Vec<String>,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Document for ChannelStatement {
    const TYPE: DocType = DocType::Channel;

    fn declared_type(&self) -> DocType {
        self.doc_type
    }
}

/// A rollback directive, signed offline by the `release` role: agents running one of `from` may
/// move down to `to` until `expires`. Without one, no agent ever installs a lower version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rollback {
    /// Always `rollback`.
    #[serde(rename = "type")]
    #[schemars(extend("const" = "rollback"))]
    pub doc_type: DocType,
    /// The product (`worker-agent`).
    pub product: String,
    /// Versions allowed to move down.
    pub from: Vec<Version>,
    /// The version they may move down to.
    pub to: Version,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// After this instant the directive no longer permits anything.
    pub expires: Timestamp,
    /// Why (written to the audit trail).
    pub reason: String,
    /// Unknown fields, preserved.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Document for Rollback {
    const TYPE: DocType = DocType::Rollback;

    fn declared_type(&self) -> DocType {
        self.doc_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release body whose one artifact carries `mirrors` (raw JSON, or nothing).
    fn release_json(mirrors: Option<&str>) -> String {
        let mirrors = mirrors.map_or_else(String::new, |m| format!(r#","mirrors":{m}"#));
        format!(
            r#"{{"type":"release","product":"worker-agent","version":"1.1.0","released_at":"2026-01-01T00:00:00Z","minimum_version":"1.0.0","artifacts":[{{"platform":"x86_64-unknown-linux-gnu","sha256":"{sha}","size":30,"url":"/a"{mirrors}}}],"notes":""}}"#,
            sha = "ab".repeat(32)
        )
    }

    #[test]
    fn a_release_from_before_mirrors_parses_and_prints_back_without_them() {
        let text = release_json(None);
        let release: Release = serde_json::from_str(&text).expect("old release");
        assert!(release.artifacts[0].mirrors.is_empty());
        release.validate().expect("valid");
        let printed = serde_json::to_value(&release).expect("print");
        assert_eq!(
            printed,
            serde_json::from_str::<Value>(&text).expect("json"),
            "no `mirrors` appears"
        );
    }

    #[test]
    fn mirrors_are_kept_in_order_and_checked() {
        let text = release_json(Some(r#"["https://b.example/x","http://a.example/x"]"#));
        let release: Release = serde_json::from_str(&text).expect("release with mirrors");
        assert_eq!(
            release.artifacts[0].mirrors,
            ["https://b.example/x", "http://a.example/x"]
        );
        release.validate().expect("valid");
        assert_eq!(
            serde_json::to_value(&release).expect("print"),
            serde_json::from_str::<Value>(&text).expect("json")
        );
        // An empty list would print back without the field: refused when parsing.
        let empty = serde_json::from_str::<Release>(&release_json(Some("[]")));
        assert!(empty.is_err_and(|e| e.to_string().contains("empty list")));
        assert!(serde_json::from_str::<Release>(&release_json(Some("null"))).is_err());
        for bad in [
            r#"["/relative"]"#,
            r#"["ftp://x.example/a"]"#,
            r#"["https://"]"#,
            r#"["https:///path"]"#,
            r#"["https://a.example/x","https://a.example/x"]"#,
        ] {
            let release: Release = serde_json::from_str(&release_json(Some(bad))).expect(bad);
            let error = release.validate().expect_err(bad);
            assert!(
                error.to_string().contains("artifacts[0].mirrors"),
                "{bad}: {error}"
            );
        }
        let many = format!(
            "[{}]",
            (0..=MAX_MIRRORS)
                .map(|i| format!(r#""https://m{i}.example/x""#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let release: Release = serde_json::from_str(&release_json(Some(&many))).expect("many");
        assert!(release.validate().is_err());
    }
}
