//! The agent's decision: given the trusted root, what the update server sent, and what the agent
//! remembers, install which artifact, do nothing, or reject with a stable reason.

use std::collections::BTreeSet;

use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::documents::{Artifact, ChannelStatement, Release, Rollback, Rollout};
use crate::error::{Error, Reason, Result};
use crate::root::{check_expiry, RoleName, Root};
use crate::signed::Signed;
use crate::timestamp::{ExpirationEnforcement, Timestamp};

/// What the agent knows about itself and remembers between checks. The agent persists it
/// (atomically) in its state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// The product this agent is (`worker-agent`).
    pub product: String,
    /// The agent's target triple.
    pub platform: String,
    /// The agent's stable identity (cohort membership hashes it).
    pub worker_id: String,
    /// The channel the agent follows.
    pub channel: String,
    /// The running version.
    pub current_version: Version,
    /// The highest channel statement serial accepted so far.
    pub accepted_serial: Option<u64>,
    /// Hash of the statement accepted at that serial (same serial, other content = replay).
    pub accepted_statement_sha256: Option<String>,
    /// Versions that failed probation here: never retried (compared by semver precedence).
    pub quarantined: BTreeSet<Version>,
}

impl LocalState {
    /// Remembers a verified statement so older ones are refused from now on.
    pub fn accept(&mut self, statement: &AcceptedStatement) {
        self.accepted_serial = Some(statement.serial);
        self.accepted_statement_sha256 = Some(statement.sha256.clone());
    }
}

/// The facts of a channel statement that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedStatement {
    /// Its channel.
    pub channel: String,
    /// Its serial.
    pub serial: u64,
    /// Hex SHA-256 of its canonical `signed` part.
    pub sha256: String,
    /// When it expires.
    pub expires: Timestamp,
    /// The channel's minimum version.
    pub minimum_version: Version,
    /// The channel's recommended version.
    pub recommended_version: Version,
    /// Whether the update is urgent.
    pub urgent: bool,
}

/// Why there is nothing to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idle {
    /// Already running the channel's release.
    UpToDate,
    /// The channel is halted.
    Halted,
    /// This worker is outside the rollout's cohort.
    NotInCohort {
        /// The rollout percentage.
        percent: u8,
    },
    /// The channel rolls out in waves and this worker is in none opened yet: not yet.
    NotInWave {
        /// The current wave's number.
        wave: u32,
        /// How many waves the plan has.
        of: u32,
        /// The cohort share opened so far.
        percent: u8,
    },
    /// The release failed probation here before.
    Quarantined(Version),
}

/// Install this artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// The version to install.
    pub version: Version,
    /// The artifact (sha256, size, url) for this platform.
    pub artifact: Artifact,
    /// True when this is a downgrade permitted by a rollback directive.
    pub is_rollback: bool,
}

/// The outcome of [`verify_update`].
#[derive(Debug)]
pub enum Decision {
    /// Download, verify and install `plan`.
    Install {
        /// What to install.
        plan: InstallPlan,
        /// The statement that offered it (to remember with [`LocalState::accept`]).
        statement: AcceptedStatement,
    },
    /// The statement is genuine and there is nothing to do.
    NothingToDo {
        /// Why.
        why: Idle,
        /// The statement (to remember with [`LocalState::accept`]).
        statement: AcceptedStatement,
    },
    /// Something failed verification: touch nothing, report [`Error::reason`].
    Reject(Error),
}

impl Decision {
    /// The rejection reason, when rejected.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Decision::Reject(error) => Some(error.reason()),
            Decision::Install { .. } | Decision::NothingToDo { .. } => None,
        }
    }
}

/// Everything an update check looks at, with the options the agent may set.
#[derive(Debug, Clone, Copy)]
pub struct UpdateCheck<'a> {
    /// The root the agent trusts (after following rotations).
    pub root: &'a Root,
    /// The channel statement the server sent.
    pub channel: &'a Signed<ChannelStatement>,
    /// The release manifest the statement points to.
    pub release: &'a Signed<Release>,
    /// A rollback directive, when the server sent one.
    pub rollback: Option<&'a Signed<Rollback>>,
    /// Install even outside the rollout cohort (`--force-update`). Never skips a signature.
    pub ignore_cohort: bool,
}

/// Decides whether to install the release a channel statement offers.
///
/// Applies, in order: the channel statement's signatures (channel role) and expiry (freeze
/// attack), its channel name, serial monotonicity (replay), the halted flag, the release's
/// signatures (release role) and its binding to the statement, the product, version monotonicity
/// unless a valid rollback directive allows the downgrade (rollback attack), quarantine, the
/// platform, `minimum_version` hops and cohort membership (which does not apply to a worker
/// below the statement's signed `minimum_version`). The artifact's size in the plan is the cap
/// the download must enforce (endless data).
pub fn verify_update(
    root: &Root,
    channel_stmt: &Signed<ChannelStatement>,
    release: &Signed<Release>,
    local_state: &LocalState,
    now: Timestamp,
) -> Decision {
    UpdateCheck {
        root,
        channel: channel_stmt,
        release,
        rollback: None,
        ignore_cohort: false,
    }
    .decide(local_state, now)
}

impl UpdateCheck<'_> {
    /// Runs the check (see [`verify_update`]).
    pub fn decide(&self, local: &LocalState, now: Timestamp) -> Decision {
        let statement = match self.verify_statement(local, now) {
            Ok(statement) => statement,
            Err(error) => return Decision::Reject(error),
        };
        match self.decide_release(local, now) {
            Ok(Ok(plan)) => Decision::Install { plan, statement },
            Ok(Err(why)) => Decision::NothingToDo { why, statement },
            Err(error) => Decision::Reject(error),
        }
    }

    /// Verifies the channel statement alone: signatures, expiry, channel, serial.
    pub fn verify_statement(
        &self,
        local: &LocalState,
        now: Timestamp,
    ) -> Result<AcceptedStatement> {
        // A root held in memory past its expiry trusts nothing any more.
        self.root.check_expiry(now, ExpirationEnforcement::Safe)?;
        let doc = self.channel;
        self.root.verify_signed(RoleName::Channel, doc)?;
        let stmt = &doc.signed;
        check_expiry("channel", stmt.expires, now, ExpirationEnforcement::Safe)?;
        if stmt.channel != local.channel {
            return Err(Error::WrongChannel {
                expected: local.channel.clone(),
                offered: stmt.channel.clone(),
            });
        }
        let sha256 = doc.signed_sha256()?;
        if let Some(accepted) = local.accepted_serial {
            let conflicting = stmt.serial == accepted
                && local
                    .accepted_statement_sha256
                    .as_deref()
                    .is_some_and(|h| h != sha256);
            if stmt.serial < accepted || conflicting {
                return Err(Error::ReplayedSerial {
                    channel: stmt.channel.clone(),
                    accepted,
                    offered: stmt.serial,
                });
            }
        }
        if stmt.rollout.percent > 100 {
            return Err(Error::malformed(
                "rollout.percent",
                format!("{} is above 100", stmt.rollout.percent),
            ));
        }
        if let Some(wave) = &stmt.rollout.wave {
            if wave.number == 0 || wave.number > wave.of {
                return Err(Error::malformed(
                    "rollout.wave.number",
                    format!("wave {} of {}", wave.number, wave.of),
                ));
            }
            if wave.workers.len() > crate::documents::MAX_WAVE_WORKERS
                || wave.workers.windows(2).any(|pair| pair[0] >= pair[1])
            {
                return Err(Error::malformed(
                    "rollout.wave.workers",
                    format!(
                        "must be sorted, distinct and at most {} ids",
                        crate::documents::MAX_WAVE_WORKERS
                    ),
                ));
            }
        }
        Ok(AcceptedStatement {
            channel: stmt.channel.clone(),
            serial: stmt.serial,
            sha256,
            expires: stmt.expires,
            minimum_version: stmt.minimum_version.clone(),
            recommended_version: stmt.recommended_version.clone(),
            urgent: stmt.urgent,
        })
    }

    fn decide_release(
        &self,
        local: &LocalState,
        now: Timestamp,
    ) -> Result<Result<InstallPlan, Idle>> {
        let stmt = &self.channel.signed;
        if stmt.halted {
            return Ok(Err(Idle::Halted));
        }
        let release_doc = self.release;
        self.root.verify_signed(RoleName::Release, release_doc)?;
        let release = &release_doc.signed;
        release.validate()?;
        let actual = release_doc.signed_sha256()?;
        if actual != stmt.release.manifest_sha256 || release.version != stmt.release.version {
            return Err(Error::ManifestMismatch {
                expected: format!(
                    "{} (version {})",
                    stmt.release.manifest_sha256, stmt.release.version
                ),
                actual,
                version: release.version.clone(),
            });
        }
        if release.product != local.product {
            return Err(Error::WrongProduct {
                expected: local.product.clone(),
                offered: release.product.clone(),
            });
        }
        // Precedence ignores build metadata: 1.5.0+rebuild is not newer than 1.5.0.
        let is_rollback = match release.version.cmp_precedence(&local.current_version) {
            std::cmp::Ordering::Equal => return Ok(Err(Idle::UpToDate)),
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Less => {
                self.check_rollback(local, &release.version, now)?;
                true
            }
        };
        if local
            .quarantined
            .iter()
            .any(|q| q.cmp_precedence(&release.version).is_eq())
        {
            return Ok(Err(Idle::Quarantined(release.version.clone())));
        }
        let artifact =
            release
                .artifact_for(&local.platform)
                .ok_or_else(|| Error::WrongPlatform {
                    version: release.version.clone(),
                    platform: local.platform.clone(),
                    available: release
                        .artifacts
                        .iter()
                        .map(|a| a.platform.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        if !is_rollback && local.current_version < release.minimum_version {
            return Err(Error::NeedsHop {
                current: local.current_version.clone(),
                minimum: release.minimum_version.clone(),
                offered: release.version.clone(),
            });
        }
        // A worker below the channel's signed minimum must not stay where it is: the cohort
        // does not hold it back from the channel's release.
        let below_minimum = local
            .current_version
            .cmp_precedence(&stmt.minimum_version)
            .is_lt();
        if !self.ignore_cohort && !below_minimum && !stmt.rollout.admits(&local.worker_id) {
            return Ok(Err(match &stmt.rollout.wave {
                Some(wave) => Idle::NotInWave {
                    wave: wave.number,
                    of: wave.of,
                    percent: stmt.rollout.percent,
                },
                None => Idle::NotInCohort {
                    percent: stmt.rollout.percent,
                },
            }));
        }
        Ok(Ok(InstallPlan {
            version: release.version.clone(),
            artifact: artifact.clone(),
            is_rollback,
        }))
    }

    fn check_rollback(&self, local: &LocalState, offered: &Version, now: Timestamp) -> Result<()> {
        let refuse = |why: &str| Error::Downgrade {
            current: local.current_version.clone(),
            offered: offered.clone(),
            why: why.to_owned(),
        };
        let doc = self
            .rollback
            .ok_or_else(|| refuse("no rollback directive"))?;
        self.root.verify_signed(RoleName::Release, doc)?;
        let directive = &doc.signed;
        check_expiry(
            "rollback",
            directive.expires,
            now,
            ExpirationEnforcement::Safe,
        )?;
        if directive.product != local.product {
            return Err(Error::WrongProduct {
                expected: local.product.clone(),
                offered: directive.product.clone(),
            });
        }
        if &directive.to != offered {
            return Err(refuse(&format!(
                "the rollback directive is to {}, not {offered}",
                directive.to
            )));
        }
        if !directive.from.contains(&local.current_version) {
            return Err(refuse(&format!(
                "the rollback directive does not cover {} (it covers {})",
                local.current_version,
                directive
                    .from
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

// Here rather than beside `Rollout`: cohort membership is the verifier's concern (and
// `documents` imports nothing of `verify`).
impl Rollout {
    /// Whether the rollout offers the release to `worker_id`: in the `percent` cohort, or named
    /// by the current wave.
    pub fn admits(&self, worker_id: &str) -> bool {
        in_rollout(worker_id, &self.salt, self.percent)
            || self.wave.as_ref().is_some_and(|wave| {
                wave.workers
                    .binary_search_by(|w| w.as_str().cmp(worker_id))
                    .is_ok()
            })
    }
}

/// Whether `worker_id` is in the first `percent` % of workers for a rollout with `salt`.
///
/// Deterministic: the worker's bucket is a hash of salt and id, so for one salt (one release)
/// raising the percentage only ever adds workers, and every party (server, agent, simulator)
/// computes the same cohort.
pub fn in_rollout(worker_id: &str, salt: &str, percent: u8) -> bool {
    cohort_bucket(worker_id, salt) < u64::from(percent.min(100))
}

/// The worker's bucket, 0 to 99, for a rollout with `salt`.
pub fn cohort_bucket(worker_id: &str, salt: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"worker-release/v1/cohort\0");
    hasher.update((salt.len() as u64).to_be_bytes());
    hasher.update(salt.as_bytes());
    hasher.update(worker_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 100
}
