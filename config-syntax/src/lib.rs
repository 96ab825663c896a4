//! The one syntax of configuration values, shared by every binary of the workspace
//! (`worker-agent` and its ESUP runner layer, `update-server`, `worker-release`), so a value
//! that one binary accepts means the same thing to the others.
//!
//! - durations: plain seconds (`30`) or a number with one unit, `ms`, `s`, `m`, `h`, `d` or
//!   `w` (`500ms`, `30s`, `5m`, `24h`, `7d`, `2w`); nothing else (no sign, fraction, space or
//!   compound like `1h30m`);
//! - booleans: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` (any case); nothing else;
//! - tokens: [`placeholder_word`] spots the placeholders shipped in example files.
//!
//! It is a crate of its own, depending on nothing but `thiserror`, because the ESUP runner
//! layer (`esup-runner`) must not depend on the signed format crate `manifests`, where the
//! duration parser used to live.
#![deny(missing_docs)]

use std::time::Duration;

/// A value that does not follow the syntax. The message names the value and what was
/// expected; the caller names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// Not a duration.
    #[error("`{text}` is not a duration (plain seconds, or a number with ms, s, m, h, d or w: 30, 30s, 5m, 24h)")]
    Duration {
        /// The value.
        text: String,
    },
    /// A duration where only whole seconds are meaningful.
    #[error("`{text}` is not a whole number of seconds")]
    WholeSeconds {
        /// The value.
        text: String,
    },
    /// Not a boolean.
    #[error("`{text}` is not a boolean (true/false, yes/no, on/off or 1/0)")]
    Bool {
        /// The value.
        text: String,
    },
}

/// Parses a duration: plain seconds (`30`), or `500ms`, `30s`, `5m`, `24h`, `7d`, `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, SyntaxError> {
    let bad = || SyntaxError::Duration {
        text: text.to_owned(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    let number: u64 = number.parse().map_err(|_| bad())?;
    if unit == "ms" {
        return Ok(Duration::from_millis(number));
    }
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// Parses a duration (see [`parse_duration`]) for a setting counted in whole seconds (the
/// `*_SECS` variables): `90`, `90s`, `5m` are 90, 90, 300; `1500ms` is refused.
pub fn parse_secs(text: &str) -> Result<u64, SyntaxError> {
    let duration = parse_duration(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(SyntaxError::WholeSeconds {
            text: text.to_owned(),
        });
    }
    Ok(duration.as_secs())
}

/// Parses a boolean: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, in any case.
pub fn parse_bool(text: &str) -> Result<bool, SyntaxError> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SyntaxError::Bool {
            text: text.to_owned(),
        }),
    }
}

/// The words that mark a token as a placeholder (compared in lower case): what example files
/// ship (`replace-with-...`, `CHANGE_ME`) and the defaults of older runners.
const PLACEHOLDERS: &[&str] = &[
    "change_me",
    "changeme",
    "change-me",
    "replace-with",
    "replace_with",
    "replaceme",
    "placeholder",
    "default",
    "example",
    "xxxx",
    "your-token",
];

/// The placeholder word `token` contains, if any (a token copied from an example file).
pub fn placeholder_word(token: &str) -> Option<&'static str> {
    let lower = token.to_ascii_lowercase();
    PLACEHOLDERS.iter().copied().find(|p| lower.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            "s",
            "-5",
            "+5",
            "5 m",
            " 5",
            "5.5s",
            "1h30m",
            "5M",
            "5y",
            "5min",
            "1e3",
            "99999999999999999999",
            "999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("5m"), Ok(300));
        assert_eq!(parse_secs("2000ms"), Ok(2));
        assert!(parse_secs("1500ms").is_err());
    }

    #[test]
    fn booleans() {
        for yes in ["1", "true", "TRUE", "yes", "On"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "No", "off"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["", "maybe", "2", "y", "enabled", " true", "true "] {
            assert!(parse_bool(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            parse_bool("maybe").map_err(|e| e.to_string()),
            Err("`maybe` is not a boolean (true/false, yes/no, on/off or 1/0)".to_owned())
        );
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            placeholder_word("replace-with-the-manager-runner-token"),
            Some("replace-with")
        );
        assert_eq!(placeholder_word("please-CHANGE_ME-now"), Some("change_me"));
        assert_eq!(placeholder_word("default-runner-token"), Some("default"));
        assert_eq!(placeholder_word("e2e-runner-token-0123456789abcdef"), None);
    }
}
