//! The updater's second look at the channel before it hands an update over: an update waits
//! for its download and for the running tasks (hours, possibly), and the operator may have
//! halted the channel, signed a rollback or promoted a newer release meanwhile.

use manifests::Decision;

use super::Updater;
use crate::client::Poll;

impl Updater {
    /// Before an update is handed over (after its download and the wait for tasks, which can
    /// take hours), reads the channel again: a halt, a rollback directive or a newer release
    /// since the decision means this update is not installed. `true` when the fresh statement
    /// still offers this very artifact. When the server cannot be reached, the statement
    /// already verified is decided on again (its expiry checked now).
    pub(super) async fn still_offered(&mut self, plan: &manifests::InstallPlan) -> bool {
        let fresh = self.fetch_latest(None, None).await;
        let latest = match fresh {
            Ok(Poll::Changed { latest, .. }) => Some(*latest),
            Ok(Poll::NotModified) => self.latest.clone(),
            Err(failure) => {
                tracing::warn!(reason = %failure.reason, error = %failure.message, "could not read the channel again before handing over; deciding on the statement already verified");
                self.latest.clone()
            }
        };
        let Some((latest, channel, release)) = latest.and_then(|l| {
            let (channel, release) = (l.channel.clone()?, l.release.clone()?);
            Some((l, channel, release))
        }) else {
            tracing::info!(version = %plan.version, "the channel changed while the update waited: it offers nothing now; not installing it");
            return false;
        };
        let now = match self.decide(&latest, &channel, &release) {
            Decision::Install {
                plan: fresh,
                statement,
            } if fresh.version == plan.version && fresh.artifact.sha256 == plan.artifact.sha256 => {
                self.accept(&statement, &release.signed.version);
                return true;
            }
            Decision::Install { plan: fresh, .. } => format!("it offers {} now", fresh.version),
            Decision::NothingToDo { why, .. } => {
                match why {
                    manifests::Idle::UpToDate => "nothing to do now".to_owned(),
                    manifests::Idle::Halted => "the channel is halted".to_owned(),
                    manifests::Idle::NotInCohort { percent } => {
                        format!("this worker is outside its {percent} % rollout now")
                    }
                    manifests::Idle::NotInWave { wave, of, .. } => {
                        format!("this worker is in none of the waves opened so far (wave {wave} of {of})")
                    }
                    manifests::Idle::Quarantined(version) => format!("{version} is quarantined"),
                }
            }
            Decision::Reject(error) => format!("its answer is refused now: {error}"),
        };
        tracing::info!(
            version = %plan.version,
            serial = channel.signed.serial,
            halted = channel.signed.halted,
            now = %now,
            "the channel changed while the update waited (halted, rolled back or a newer release); not installing it"
        );
        false
    }
}
