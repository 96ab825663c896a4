//! Delta updates: when the release lists a signed patch whose base is exactly the installed
//! binary (its sha256), download the patch (verified against its signed hash and size), apply
//! it streaming into `.worker-agent-<sha>.patching` next to the install path, verify the result
//! against the signed full artifact, and only then stage it for the usual supervisor
//! verification and probation. Any failure counts `worker_update_failure_total{reason=
//! "delta_failed"}`, is logged, and the same attempt falls back to the full artifact: a patch
//! can cost a download, never an install.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::time::Instant;

use manifests::{Delta, InstallPlan};

use super::Updater;
use crate::download::download;
use crate::error::{FailureReason, UpdateFailure};
use crate::handover;

impl Updater {
    /// The staged result of applying `plan`'s delta from the installed binary, or `None` (no
    /// delta for it, or it failed: counted and logged) to download the full artifact.
    pub(super) async fn try_delta(
        &mut self,
        plan: &InstallPlan,
        correlation_id: &str,
        started: Instant,
    ) -> Option<PathBuf> {
        if plan.artifact.deltas.is_empty() {
            return None;
        }
        let install = self.install_path.clone();
        let installed = match tokio::task::spawn_blocking(move || {
            manifests::hash_file(&install).map_err(|e| e.to_string())
        })
        .await
        {
            Ok(Ok((sha256, _))) => sha256,
            Ok(Err(error)) => {
                tracing::info!(%error, "installed binary unreadable; no delta update, downloading the full artifact");
                return None;
            }
            Err(error) => {
                tracing::info!(%error, "hashing the installed binary failed; downloading the full artifact");
                return None;
            }
        };
        let Some(delta) = plan
            .artifact
            .deltas
            .iter()
            .find(|d| d.base_sha256 == installed)
            .cloned()
        else {
            tracing::info!(installed_sha256 = %installed, deltas = plan.artifact.deltas.len(), "no delta from the installed binary; downloading the full artifact");
            return None;
        };
        let applying = Instant::now();
        match self.apply_delta(plan, &delta).await {
            Ok(staged) => {
                tracing::info!(
                    base_version = %delta.base_version,
                    patch_bytes = delta.patch_size,
                    full_bytes = plan.artifact.size,
                    delta_ms = u64::try_from(applying.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "delta update applied and verified against the signed artifact"
                );
                Some(staged)
            }
            Err(cause) => {
                let failure = UpdateFailure::fatal(
                    FailureReason::DeltaFailed,
                    format!(
                        "delta from {} ({}): {}: {}",
                        delta.base_version, delta.patch_sha256, cause.reason, cause.message
                    ),
                );
                tracing::warn!(reason = %failure.reason, cause = %cause.reason, error = %failure.message, "delta update refused; downloading the full artifact instead");
                self.count_attempt_failure(plan, correlation_id, &failure, started);
                None
            }
        }
    }

    /// Downloads `delta`'s patch, applies it to the installed binary and stages the verified
    /// result. Every intermediate file is deleted on failure.
    async fn apply_delta(
        &self,
        plan: &InstallPlan,
        delta: &Delta,
    ) -> Result<PathBuf, UpdateFailure> {
        let patch = delta.patch_artifact(&plan.artifact.platform);
        let patch_part = handover::part_path(&self.install_path, &patch.sha256);
        let url = self.session.client.resolve(&delta.url);
        let telemetry = self.session.telemetry.clone();
        let on_bytes = move |n: u64| telemetry.downloaded("delta", n);
        let downloaded = download(
            self.session.client.http(),
            &url,
            // Only the update server gets the worker token, never a mirror.
            self.session.client.token_for(&url),
            &patch,
            &patch_part,
            &self.download_options(),
            &on_bytes,
        )
        .await;
        self.session.telemetry.flush();
        // A network failure keeps the partial patch for the next attempt's resume.
        downloaded?;
        let patched = handover::patched_path(&self.install_path, &plan.artifact.sha256);
        let (install, result, state_dir) = (
            self.install_path.clone(),
            plan.artifact.clone(),
            self.session.state.path().to_owned(),
        );
        let (patch_file, out) = (patch_part.clone(), patched.clone());
        let applied = tokio::task::spawn_blocking(move || {
            apply_file(&install, &patch_file, &result, &out, &state_dir)
        })
        .await
        .unwrap_or_else(|e| {
            Err(UpdateFailure::fatal(
                FailureReason::Io,
                format!("patch task: {e}"),
            ))
        });
        let _ = std::fs::remove_file(&patch_part);
        if let Err(failure) = applied {
            let _ = std::fs::remove_file(&patched);
            return Err(failure);
        }
        let staged =
            handover::staged_path(&self.install_path, &plan.version, &plan.artifact.sha256);
        if let Err(failure) = self.stage(&patched, &staged) {
            let _ = std::fs::remove_file(&patched);
            return Err(failure);
        }
        Ok(staged)
    }
}

/// Applies `patch` to the binary at `install` into `out` (created anew: a `kill -9` leaves at
/// most a stale `.patching` file, never a staged one), verified against `result`, fsync'd.
fn apply_file(
    install: &std::path::Path,
    patch: &std::path::Path,
    result: &manifests::Artifact,
    out: &std::path::Path,
    state_dir: &std::path::Path,
) -> Result<(), UpdateFailure> {
    // The base is the reference prefix zstd matches against: held in memory (its size is the
    // installed binary's), the result streams to disk.
    let base = std::fs::read(install)
        .map_err(|e| UpdateFailure::io("reading the installed binary", install, &e))?;
    let patch_reader = BufReader::new(
        File::open(patch).map_err(|e| UpdateFailure::io("opening the patch", patch, &e))?,
    );
    let file =
        File::create(out).map_err(|e| UpdateFailure::io("creating the patched file", out, &e))?;
    let mut writer = BufWriter::new(file);
    let mut first = true;
    let mut on_chunk = |_n: u64| {
        if std::mem::take(&mut first) {
            crate::failpoint::hit_blocking("patching", state_dir);
        }
    };
    manifests::apply_patch(&base, patch_reader, result, &mut writer, &mut on_chunk).map_err(
        |error| match error {
            manifests::DeltaError::Result(e) => UpdateFailure::from(*e),
            manifests::DeltaError::Io { source, .. } => {
                UpdateFailure::io("writing the patched file", out, &source)
            }
            other => UpdateFailure::fatal(FailureReason::Malformed, other.to_string()),
        },
    )?;
    let file = writer
        .into_inner()
        .map_err(|e| UpdateFailure::io("writing the patched file", out, e.error()))?;
    file.sync_all()
        .map_err(|e| UpdateFailure::io("syncing the patched file", out, &e))?;
    drop(file);
    Ok(())
}
