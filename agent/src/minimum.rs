//! The channel's minimum version, as the agent acts on it: only the `minimum_version` of a
//! channel statement that passed verification (signed by the channel role, unexpired, not
//! replayed) counts. The registration handshake's `below_minimum` is unsigned (anyone on the
//! path can write it), so it is never acted on.
//!
//! Below the signed minimum, the worker keeps running and keeps updating itself (the update
//! loop installs the channel's release, outside the rollout cohort too: see
//! `manifests::UpdateCheck`), so it can always reach the release that fixes it. Whether it
//! also keeps serving tasks meanwhile is the operator's choice (`--serve-below-minimum`,
//! `SERVE_BELOW_MINIMUM`); by default it refuses new tasks (a hold on the [`TaskGate`]: its
//! instances show `busy`), since the channel's owner signed that versions below the minimum
//! must not serve. Running tasks are never cut.

use manifests::Version;

use crate::tasks::TaskGate;

/// Applies the signed minimum of each accepted statement to the worker's task gate.
#[derive(Debug)]
pub struct MinimumGuard {
    /// The running version.
    version: Version,
    /// The gate held while below the minimum (unless serving anyway).
    gate: TaskGate,
    /// The operator chose to keep serving tasks below the minimum.
    serve_below: bool,
    /// The signed minimum this version is below, if it is.
    below: Option<Version>,
}

impl MinimumGuard {
    /// A guard for `version`'s `gate`; `serve_below` from `--serve-below-minimum`.
    pub fn new(version: Version, gate: TaskGate, serve_below: bool) -> Self {
        MinimumGuard {
            version,
            gate,
            serve_below,
            below: None,
        }
    }

    /// Whether the running version is below the last signed minimum applied.
    pub fn is_below(&self) -> bool {
        self.below.is_some()
    }

    /// Acts on the signed `minimum` of a verified statement: holds or releases the gate, and
    /// says so once per change.
    pub fn apply(&mut self, minimum: &Version) {
        // Precedence ignores build metadata, as the server's comparison does.
        let below = self.version.cmp_precedence(minimum).is_lt();
        if !below {
            if self.below.take().is_some() {
                self.gate.release();
                tracing::info!(%minimum, version = %self.version, event = "above_minimum", "this version is no longer below the channel's signed minimum; taking tasks again");
            }
            return;
        }
        if self.below.as_ref() == Some(minimum) {
            return;
        }
        self.below = Some(minimum.clone());
        if self.serve_below {
            tracing::warn!(%minimum, version = %self.version, event = "below_minimum_forced", "this version is below the channel's signed minimum; serving tasks anyway (--serve-below-minimum) and updating as soon as the channel offers a release");
        } else {
            self.gate.hold();
            tracing::error!(%minimum, version = %self.version, event = "below_minimum_refused", "this version is below the channel's signed minimum; refusing new tasks (start with --serve-below-minimum to serve anyway) and updating as soon as the channel offers a release");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().expect("version")
    }

    #[test]
    fn below_the_minimum_new_tasks_are_refused_until_it_is_lowered() {
        let gate = TaskGate::new();
        let mut guard = MinimumGuard::new(v("1.0.0"), gate.clone(), false);
        guard.apply(&v("0.9.0"));
        assert!(!guard.is_below() && !gate.draining());
        guard.apply(&v("1.5.0"));
        assert!(guard.is_below() && gate.held());
        // An update's drain and undrain do not lift the hold.
        gate.drain();
        gate.undrain();
        assert!(gate.try_start().is_none());
        guard.apply(&v("1.0.0+build"));
        assert!(!guard.is_below() && !gate.draining());
        assert!(gate.try_start().is_some());
    }

    #[test]
    fn serving_below_the_minimum_is_the_operators_choice() {
        let gate = TaskGate::new();
        let mut guard = MinimumGuard::new(v("1.0.0"), gate.clone(), true);
        guard.apply(&v("1.5.0"));
        assert!(guard.is_below());
        assert!(!gate.draining(), "serving anyway");
    }
}
