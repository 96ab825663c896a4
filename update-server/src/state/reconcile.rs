//! Channels across key and root rotations. A channel is never dropped because a rotation
//! changed who may sign: at start and after `POST /api/admin/roots` each channel is verified
//! again and, when the current root would not accept it as it is, re-signed with the current
//! channel key at the next stored serial. A channel whose release the current root no longer
//! accepts (its release key was dropped) is re-signed *halted*, with the reason, until the
//! release engineer re-signs the release offline and publishes it again (then `resume` or
//! `promote`): agents never verify the release of a halted statement, so they neither install
//! nor report it meanwhile.

use std::sync::Arc;

use manifests::{ChannelStatement, Release, RoleName, Rollback, Root, Signed};

use super::channels::{ChannelChange, ChannelView};
use super::{now, read_lock, write_lock, App};
use crate::error::{Error, Result};
use crate::store::{AuditRecord, ChannelRecord, ChannelWrite, StoreResult};

impl App {
    /// At start: serves every stored channel, re-signing those the current root does not accept
    /// as they are. A channel is left out only when its statement verifies against no root of
    /// the stored chain (someone wrote the database) or its release is gone.
    pub(super) fn load_channels(&self) -> StoreResult<()> {
        let roots = read_lock(&self.trust).roots_newest_first();
        for record in self.store.channels()? {
            let channel = record.channel.clone();
            if let Err(error) = self.load_channel(record, &roots) {
                tracing::error!(%channel, %error, reason = %error.reason(), "stored channel state unusable; channel not served");
            }
        }
        Ok(())
    }

    fn load_channel(&self, record: ChannelRecord, roots: &[Root]) -> Result<()> {
        let statement = Signed::<ChannelStatement>::from_slice(&record.statement)?;
        // Signed by a channel key of a root this server trusted: the current one or, after a
        // channel-key rotation, an earlier one.
        let mut refusal = None;
        for root in roots {
            match root.verify_signed(RoleName::Channel, &statement) {
                Ok(()) => {
                    refusal = None;
                    break;
                }
                Err(error) => {
                    refusal.get_or_insert(error);
                }
            }
        }
        if let Some(error) = refusal {
            return Err(error.into());
        }
        let release = read_lock(&self.releases)
            .get(&statement.signed.release.version.to_string())
            .map(|r| r.doc.clone())
            .ok_or_else(|| Error::StatementReleaseMissing {
                channel: record.channel.clone(),
                version: statement.signed.release.version.clone(),
            })?;
        if statement.signed.channel != record.channel
            || release.signed_sha256()? != statement.signed.release.manifest_sha256
        {
            return Err(Error::StatementMismatch {
                channel: record.channel,
            });
        }
        let rollback = match &record.rollback {
            Some(bytes) => Some(Signed::<Rollback>::from_slice(bytes)?),
            None => None,
        };
        let plan = record
            .plan
            .as_deref()
            .and_then(|text| super::waves::RolloutPlan::from_json(&record.channel, text));
        let view = self.build_view(
            statement,
            release,
            rollback,
            record.halt_reason.clone(),
            plan,
        );
        let Some((change, detail)) = self.reconcile_change(&view) else {
            return self.install_view(record);
        };
        let channel = record.channel;
        let stored_serial = self.store.max_serial(&channel)?;
        let signed = self.sign_change(&channel, &change, stored_serial)?;
        let audit = resign_audit(&channel, &signed.statement, "server", &detail);
        self.store.save_channel(ChannelWrite {
            record: &signed.record,
            serial: signed.statement.signed.serial,
            audit: &audit,
            promotion: None,
        })?;
        tracing::warn!(%channel, serial = signed.statement.signed.serial, halted = signed.statement.signed.halted, "channel re-signed at start: {detail}");
        self.install_view(signed.record)
    }

    /// After a root rotation through the admin API (the caller holds the admin lock): every
    /// channel re-signed under the new root, halted when its release no longer verifies.
    pub(super) async fn resign_all_locked(&self, actor: &str) {
        let root_version = self.root_version();
        let views: Vec<(String, Arc<ChannelView>)> = read_lock(&self.views)
            .iter()
            .map(|(name, view)| (name.clone(), view.clone()))
            .collect();
        for (channel, view) in views {
            let (change, detail) = self.reconcile_change(&view).unwrap_or_else(|| {
                (
                    ChannelChange::from(Some(view.as_ref())),
                    format!("re-signed under root version {root_version}"),
                )
            });
            let result = self
                .change_channel_locked(&channel, "resign", actor, &detail, None, |_| Ok(change))
                .await;
            match result {
                Ok(summary) => {
                    tracing::info!(%channel, serial = summary.serial, halted = summary.halted, "channel re-signed after root rotation: {detail}")
                }
                Err(error) => {
                    tracing::error!(%channel, %error, reason = %error.reason(), "re-signing after root rotation failed")
                }
            }
        }
    }

    /// What `view` must become for the current root to accept it, with why in words; `None`
    /// when it can be served as it is.
    fn reconcile_change(&self, view: &ChannelView) -> Option<(ChannelChange, String)> {
        let root = read_lock(&self.trust).current.clone();
        let ours = self.channel_key.keyid();
        let mut change = ChannelChange::from(Some(view));
        let mut why = Vec::new();
        let foreign = view.statement.signatures.iter().any(|s| s.keyid != ours);
        if foreign
            || root
                .verify_signed(RoleName::Channel, &view.statement)
                .is_err()
        {
            why.push(format!(
                "statement re-signed with the current channel key {ours} (root version {})",
                root.version
            ));
        }
        let mut halt = Vec::new();
        if let Some(rollback) = &view.rollback {
            if let Err(error) = root.verify_signed(RoleName::Release, rollback) {
                change.rollback = None;
                halt.push(format!(
                    "rollback directive to {} dropped: it does not verify against root version {} ({error}); sign a new one with a current release key",
                    rollback.signed.to, root.version
                ));
            }
        }
        if let Some(problem) = self.release_untrusted(&view.release.signed.version) {
            halt.push(problem);
        }
        if !halt.is_empty() {
            let reason = format!("halted by the server: {}", halt.join("; "));
            if !(view.statement.signed.halted && view.halt_reason == reason) {
                change.halted = Some(true);
                change.halt_reason = Some(reason.clone());
                why.push(reason);
            }
        }
        (!why.is_empty()).then(|| (change, why.join("; ")))
    }

    /// Serves `release` (re-signed, published again) in the channels that offer its version.
    pub(super) fn refresh_release_in_views(&self, release: &Signed<Release>) {
        let offering: Vec<Arc<ChannelView>> = read_lock(&self.views)
            .values()
            .filter(|view| view.release.signed.version == release.signed.version)
            .cloned()
            .collect();
        for view in offering {
            let rebuilt = self.build_view(
                view.statement.clone(),
                release.clone(),
                view.rollback.clone(),
                view.halt_reason.clone(),
                view.plan.clone(),
            );
            write_lock(&self.views)
                .insert(view.statement.signed.channel.clone(), Arc::new(rebuilt));
        }
        self.notify();
    }
}

fn resign_audit(
    channel: &str,
    statement: &Signed<ChannelStatement>,
    actor: &str,
    detail: &str,
) -> AuditRecord {
    AuditRecord {
        at: now().unix(),
        kind: "resign".to_owned(),
        actor: actor.to_owned(),
        channel: channel.to_owned(),
        version: statement.signed.release.version.to_string(),
        detail: format!("serial {}: {detail}", statement.signed.serial),
    }
}
