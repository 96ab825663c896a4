//! Releases and artifacts: verified on publication, stored, and checked again before a channel
//! may offer one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use manifests::{Release, RoleName, Root, Signed, Timestamp, Version};

use super::{now, read_lock, write_lock, App};
use crate::api::PublishedRelease;
use crate::error::{Error, Result};
use crate::store::{AuditRecord, PutRelease, ReleaseRecord, Store, StoreResult};

/// A stored release, parsed.
#[derive(Debug, Clone)]
pub(super) struct StoredRelease {
    /// As stored.
    pub(super) record: ReleaseRecord,
    /// Its document (valid; see `untrusted` for its signatures).
    pub(super) doc: Signed<Release>,
    /// Why the current root does not accept its signatures (a release key the root dropped):
    /// no channel offers it until it is re-signed and published again.
    pub(super) untrusted: Option<String>,
}

impl StoredRelease {
    /// `record` with its document, checked against `root`.
    fn checked(record: ReleaseRecord, doc: Signed<Release>, root: &Root) -> Self {
        let untrusted = root
            .verify_signed(RoleName::Release, &doc)
            .err()
            .map(|error| untrusted_text(&doc, root, &error));
        StoredRelease {
            record,
            doc,
            untrusted,
        }
    }
}

fn untrusted_text(doc: &Signed<Release>, root: &Root, error: &manifests::Error) -> String {
    format!(
        "release {} does not verify against root version {} ({error}): re-sign it with a current release key (`worker-release sign release.json --key K`) and publish it again",
        doc.signed.version, root.version
    )
}

/// The stored releases, each checked against the current root (`roots[0]`, the chain newest
/// first). One that is unreadable, invalid, or verifies against no root of the chain (whoever
/// can write the database must not get a release served) is not loaded; one only an earlier
/// root accepts (its release key was dropped) is kept, marked untrusted, so that the channels
/// offering it can be halted with the reason instead of vanishing.
pub(super) fn load_releases(
    store: &dyn Store,
    roots: &[Root],
) -> StoreResult<BTreeMap<String, StoredRelease>> {
    let Some(root) = roots.first() else {
        return Ok(BTreeMap::new());
    };
    let mut releases = BTreeMap::new();
    for record in store.releases()? {
        let doc = match Signed::<Release>::from_slice(&record.body) {
            Ok(doc) => doc,
            Err(error) => {
                tracing::error!(version = %record.version, %error, "stored release unreadable; not served");
                continue;
            }
        };
        if let Err(error) = doc.signed.validate() {
            tracing::error!(version = %record.version, %error, reason = %error.reason(), "stored release invalid; not served");
            continue;
        }
        let trusted_once = roots
            .iter()
            .any(|root| root.verify_signed(RoleName::Release, &doc).is_ok());
        if !trusted_once {
            tracing::error!(version = %record.version, reason = "bad_signature", "stored release verifies against no root of the chain; not served");
            continue;
        }
        let stored = StoredRelease::checked(record, doc, root);
        if let Some(problem) = &stored.untrusted {
            tracing::error!(version = %stored.record.version, reason = "untrusted_release", "{problem}");
        }
        releases.insert(stored.record.version.clone(), stored);
    }
    Ok(releases)
}

impl App {
    /// Where artifact `sha256` is stored, if it is. One this process did not store may have
    /// been stored by another replica sharing the `--data-dir` (a shared filesystem): the
    /// store is content-addressed and written only by an atomic rename after the upload's hash
    /// and size were checked, so a file named `sha256` is adopted once its bytes hash to its
    /// name (hashed once, off the runtime's threads), then served like one uploaded here.
    pub async fn artifact_path(&self, sha256: &str) -> Result<Option<PathBuf>> {
        let path = self.artifacts_dir.join(sha256);
        if read_lock(&self.artifacts).contains_key(sha256) {
            return Ok(Some(path));
        }
        let file = path.clone();
        let hashed = tokio::task::spawn_blocking(move || match manifests::hash_file(&file) {
            Ok(found) => Some(found),
            Err(manifests::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(error) => {
                tracing::error!(path = %file.display(), %error, "artifact file unreadable; not served");
                None
            }
        })
        .await
        .map_err(|source| Error::Task {
            context: "hashing a shared artifact",
            source,
        })?;
        match hashed {
            Some((found, size)) if found == sha256 => {
                write_lock(&self.artifacts).insert(sha256.to_owned(), size);
                tracing::info!(%sha256, size, "artifact stored by another replica of this data directory: served from here too");
                Ok(Some(path))
            }
            Some((found, _)) => {
                tracing::error!(%sha256, %found, reason = "hash_mismatch", "artifact file does not hash to its name; not served");
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Verifies and stores a release manifest.
    pub async fn publish_release(&self, body: Bytes, actor: &str) -> Result<PublishedRelease> {
        let doc = Signed::<Release>::from_slice(&body)?;
        {
            let trust = read_lock(&self.trust);
            trust.current.verify_signed(RoleName::Release, &doc)?;
        }
        doc.signed.validate()?;
        if doc.signed.product != manifests::PRODUCT {
            return Err(manifests::Error::WrongProduct {
                expected: manifests::PRODUCT.to_owned(),
                offered: doc.signed.product.clone(),
            }
            .into());
        }
        if doc.signed.artifacts.is_empty() {
            return Err(Error::ReleaseWithoutArtifacts {
                version: doc.signed.version.clone(),
            });
        }
        let version = doc.signed.version.to_string();
        let record = ReleaseRecord {
            version: version.clone(),
            manifest_sha256: doc.signed_sha256()?,
            body: body.to_vec(),
            published_at: now().unix(),
        };
        let audit = AuditRecord {
            at: record.published_at,
            kind: "publish".to_owned(),
            actor: actor.to_owned(),
            channel: String::new(),
            version: version.clone(),
            detail: format!("manifest {}", record.manifest_sha256),
        };
        let stored = record.clone();
        let outcome = self
            .db(move |store| store.put_release(&stored, &audit))
            .await?;
        let newly_stored = match outcome {
            PutRelease::Conflict => return Err(Error::ReleaseConflict { version }),
            PutRelease::Identical => false,
            PutRelease::Inserted | PutRelease::Resigned => {
                tracing::info!(%version, manifest_sha256 = %record.manifest_sha256, %actor, resigned = outcome == PutRelease::Resigned, "release published");
                write_lock(&self.releases).insert(
                    version.clone(),
                    StoredRelease {
                        record: record.clone(),
                        doc: doc.clone(),
                        untrusted: None,
                    },
                );
                if outcome == PutRelease::Resigned {
                    self.refresh_release_in_views(&doc);
                }
                outcome == PutRelease::Inserted
            }
        };
        Ok(PublishedRelease {
            newly_stored,
            body: serde_json::json!({
                "version": version,
                "manifest_sha256": record.manifest_sha256,
                "missing_artifacts": self.missing_artifacts(&doc.signed),
                "resigned": outcome == PutRelease::Resigned,
            }),
        })
    }

    fn missing_artifacts(&self, release: &Release) -> Vec<String> {
        let artifacts = read_lock(&self.artifacts);
        release
            .artifacts
            .iter()
            .filter(|a| !artifacts.contains_key(&a.sha256))
            .map(|a| a.sha256.clone())
            .collect()
    }

    /// Checks every release again against the current root (after a rotation).
    pub(super) fn recheck_releases(&self) {
        let root = read_lock(&self.trust).current.clone();
        let mut releases = write_lock(&self.releases);
        for stored in releases.values_mut() {
            *stored = StoredRelease::checked(stored.record.clone(), stored.doc.clone(), &root);
            if let Some(problem) = &stored.untrusted {
                tracing::error!(version = %stored.record.version, reason = "untrusted_release", "{problem}");
            }
        }
    }

    /// Why release `version` is not accepted by the current root, if it is stored and is not.
    pub(super) fn release_untrusted(&self, version: &Version) -> Option<String> {
        read_lock(&self.releases)
            .get(&version.to_string())
            .and_then(|r| r.untrusted.clone())
    }

    /// Every stored release with its completeness.
    pub fn list_releases(&self) -> serde_json::Value {
        let releases = read_lock(&self.releases);
        let list: Vec<_> = releases
            .values()
            .map(|r| {
                let missing = self.missing_artifacts(&r.doc.signed);
                serde_json::json!({
                    "version": r.record.version,
                    "manifest_sha256": r.record.manifest_sha256,
                    "published_at": Timestamp::from_unix(r.record.published_at).map(|t| t.to_string()),
                    "complete": missing.is_empty(),
                    "missing_artifacts": missing,
                    "untrusted": r.untrusted,
                })
            })
            .collect();
        serde_json::json!({ "releases": list })
    }

    /// The signed size of artifact `sha256` in any stored release: a full artifact, or the
    /// patch of one of its deltas (stored and served the same way, content-addressed).
    pub fn expected_artifact(&self, sha256: &str) -> Option<manifests::Artifact> {
        let releases = read_lock(&self.releases);
        let artifacts = || {
            releases
                .values()
                .flat_map(|r| r.doc.signed.artifacts.iter())
        };
        artifacts()
            .find(|a| a.sha256 == sha256)
            .cloned()
            .or_else(|| {
                artifacts().find_map(|a| {
                    a.deltas
                        .iter()
                        .find(|d| d.patch_sha256 == sha256)
                        .map(|d| d.patch_artifact(&a.platform))
                })
            })
    }

    /// Whether an artifact is already stored.
    pub fn has_artifact(&self, sha256: &str) -> bool {
        read_lock(&self.artifacts).contains_key(sha256)
    }

    /// The directory uploads are staged in (same filesystem as the store, for atomic renames).
    pub fn incoming_dir(&self) -> PathBuf {
        self.artifacts_dir.join("incoming")
    }

    /// Moves a verified upload into place (fsync'd) and records it.
    pub async fn commit_artifact(
        &self,
        staged: tempfile::NamedTempFile,
        sha256: &str,
        size: u64,
    ) -> Result<()> {
        let target = self.artifacts_dir.join(sha256);
        let dir = self.artifacts_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            staged.as_file().sync_all()?;
            staged.persist(&target).map_err(|e| e.error)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|source| Error::Task {
            context: "storing artifact",
            source,
        })?
        .map_err(|source| Error::ArtifactIo {
            sha256: sha256.to_owned(),
            source,
        })?;
        let sha = sha256.to_owned();
        self.db(move |store| store.add_artifact(&sha, size, now().unix()))
            .await?;
        write_lock(&self.artifacts).insert(sha256.to_owned(), size);
        tracing::info!(%sha256, size, "artifact stored");
        Ok(())
    }

    /// Release `version`, verified again against the current root, with all its artifacts stored.
    pub(super) fn verified_release(&self, version: &Version) -> Result<Signed<Release>> {
        let stored = read_lock(&self.releases)
            .get(&version.to_string())
            .cloned()
            .ok_or_else(|| Error::ReleaseNotPublished {
                version: version.clone(),
            })?;
        let check = read_lock(&self.trust)
            .current
            .verify_signed(RoleName::Release, &stored.doc);
        if let Err(error) = check {
            return Err(Error::ReleaseUntrusted {
                version: version.clone(),
                detail: untrusted_text(&stored.doc, &read_lock(&self.trust).current, &error),
            });
        }
        let missing = self.missing_artifacts(&stored.doc.signed);
        if !missing.is_empty() {
            return Err(Error::IncompleteRelease {
                version: version.clone(),
                missing,
            });
        }
        Ok(stored.doc)
    }
}
