//! Which channels exist: created explicitly (`worker-release channel create`, `POST
//! /api/admin/channels`), listed and deleted. A name that was never created is refused
//! everywhere (promote, halt, `/latest`, register, report) with `unknown_channel`, so a typo
//! neither opens a channel at 100 % nor adds an inventory entry or a label value.

use super::{now, read_lock, validate_channel_name, write_lock, App};
use crate::api::ChannelListing;
use crate::error::{Error, Result};
use crate::store::AuditRecord;

impl App {
    /// `channel` is a valid name of a created channel.
    pub fn require_channel(&self, channel: &str) -> Result<()> {
        validate_channel_name(channel)?;
        if read_lock(&self.channel_names).contains(channel) {
            Ok(())
        } else {
            Err(Error::UnknownChannel {
                channel: channel.to_owned(),
            })
        }
    }

    /// Every created channel, by name, with what it offers and who follows it.
    pub fn list_channels(&self) -> Vec<ChannelListing> {
        let names = read_lock(&self.channel_names).clone();
        let views = read_lock(&self.views);
        names
            .into_iter()
            .map(|channel| ChannelListing {
                version: views
                    .get(&channel)
                    .map(|view| view.release.signed.version.to_string()),
                workers: self.followers(&channel),
                channel,
            })
            .collect()
    }

    /// Creates `channel` (durable, audited) so that releases can be promoted on it.
    pub async fn create_channel(&self, channel: &str, actor: &str) -> Result<ChannelListing> {
        validate_channel_name(channel)?;
        let _admin = self.admin.lock().await;
        let audit = self.channel_audit("channel_create", actor, channel, "created".to_owned());
        let name = channel.to_owned();
        let created = self
            .db(move |store| store.create_channel(&name, &audit))
            .await?;
        if !created {
            return Err(Error::ChannelExists {
                channel: channel.to_owned(),
            });
        }
        write_lock(&self.channel_names).insert(channel.to_owned());
        tracing::info!(%channel, %actor, "channel created");
        Ok(ChannelListing {
            channel: channel.to_owned(),
            version: None,
            workers: self.followers(channel),
        })
    }

    /// Deletes `channel`. Refused while workers of the inventory follow it unless `force`: they
    /// would be answered 404 from then on, which an operator should decide knowingly.
    pub async fn delete_channel(&self, channel: &str, force: bool, actor: &str) -> Result<()> {
        self.require_channel(channel)?;
        let _admin = self.admin.lock().await;
        let workers = self.followers(channel);
        if workers > 0 && !force {
            return Err(Error::ChannelFollowed {
                channel: channel.to_owned(),
                workers,
            });
        }
        let detail = format!("deleted ({workers} worker(s) following)");
        let audit = self.channel_audit("channel_delete", actor, channel, detail);
        let name = channel.to_owned();
        self.db(move |store| store.delete_channel(&name, &audit))
            .await?;
        write_lock(&self.channel_names).remove(channel);
        write_lock(&self.views).remove(channel);
        tracing::warn!(%channel, %actor, workers, "channel deleted");
        self.notify();
        Ok(())
    }

    /// Workers of the inventory following `channel`.
    fn followers(&self, channel: &str) -> usize {
        self.inventory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|seen| seen.channel == channel)
            .count()
    }

    fn channel_audit(&self, kind: &str, actor: &str, channel: &str, detail: String) -> AuditRecord {
        AuditRecord {
            at: now().unix(),
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            channel: channel.to_owned(),
            version: String::new(),
            detail,
        }
    }
}
