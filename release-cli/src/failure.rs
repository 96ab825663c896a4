//! The stable reason label every failure is led by (`worker-release: error [LABEL]: ...`), and
//! the one-line rendering of an error chain with each cause said once.

use std::fmt;

/// A failure of the CLI's own checks, with the label it is reported under. The labels are listed
/// in `wiki/trust-format.md` (the `(CLI)` rows).
#[derive(Debug)]
pub struct Refusal {
    /// The stable label, e.g. `usage`, `exists`, `wrong_role`, `artifact_mismatch`.
    pub reason: &'static str,
    /// What was refused and why.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// An error led by `reason`.
pub fn refuse(reason: &'static str, message: impl Into<String>) -> anyhow::Error {
    Refusal {
        reason,
        message: message.into(),
    }
    .into()
}

/// The label of a failure: the trust format's, the update server's, the CLI's own, else one
/// named after what failed underneath (`io`, `unreachable`), else `invalid`.
pub fn reason_label(error: &anyhow::Error) -> String {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<manifests::Error>() {
            return e.reason().to_string();
        }
        if let Some(refused) = cause.downcast_ref::<crate::admin::ServerRefused>() {
            // A refusal without the API's error body (a proxy's page, say) is still a refusal.
            return refused
                .reason
                .clone()
                .unwrap_or_else(|| "refused".to_owned());
        }
        if let Some(refusal) = cause.downcast_ref::<Refusal>() {
            return refusal.reason.to_owned();
        }
    }
    if error.chain().any(|e| e.is::<reqwest::Error>()) {
        return "unreachable".to_owned();
    }
    if error.chain().any(|e| e.is::<std::io::Error>()) {
        return "io".to_owned();
    }
    "invalid".to_owned()
}

/// The chain as `outer: cause: cause`, each cause once: a wrapper that already ends with its
/// source's text (`PersistError`, `io::Error` in a context) does not repeat it.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|last| last.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn a_cause_is_said_once() {
        let io = std::io::Error::from_raw_os_error(17);
        let text = io.to_string();
        let error = Err::<(), _>(anyhow::Error::new(io))
            .context(text.clone())
            .context("writing out.json")
            .unwrap_err();
        assert_eq!(one_line(&error), format!("writing out.json: {text}"));
        assert_eq!(reason_label(&error), "io");
    }
}
