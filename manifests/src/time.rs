//! Reading timestamps and durations: the one textual form of a [`Timestamp`]
//! (`YYYY-MM-DDTHH:MM:SSZ`, see `timestamp`), nothing else, and durations like `24h`.

use std::str::FromStr;

use chrono::{NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::timestamp::{Timestamp, FORMAT};

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let parsed = NaiveDateTime::parse_from_str(text, FORMAT).map_err(|e| {
            Error::malformed(
                "timestamp",
                format!("{text:?}: {e} (expected YYYY-MM-DDTHH:MM:SSZ)"),
            )
        })?;
        if parsed.nanosecond() != 0 {
            return Err(Error::malformed(
                "timestamp",
                format!("{text:?}: leap seconds are not accepted"),
            ));
        }
        let stamp = Timestamp(Utc.from_utc_datetime(&parsed));
        // chrono accepts some non-canonical spellings (e.g. a one-digit hour); insist on the one form.
        if stamp.to_string() != text {
            return Err(Error::malformed(
                "timestamp",
                format!("{text:?} is not in canonical form YYYY-MM-DDTHH:MM:SSZ"),
            ));
        }
        Ok(stamp)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a duration into seconds, in the one syntax every binary shares
/// ([`config_syntax::parse_duration`]: plain seconds, or `90s`, `15m`, `24h`, `30d`, `52w`).
pub fn parse_duration_secs(text: &str) -> Result<i64> {
    config_syntax::parse_secs(text)
        .map_err(|e| e.to_string())
        .and_then(|secs| i64::try_from(secs).map_err(|_| format!("`{text}` is too long")))
        .map_err(|detail| Error::malformed("duration", detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_canonical_form_only() {
        let stamp: Timestamp = "2026-11-23T18:37:35Z".parse().expect("canonical");
        assert_eq!(stamp.to_string(), "2026-11-23T18:37:35Z");
        for bad in [
            "2026-11-23T18:37:35.000Z",
            "2026-11-23T18:37:35+00:00",
            "2026-11-23 18:37:35Z",
            "2026-11-23T8:37:35Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("24h").ok(), Some(86_400));
        assert_eq!(parse_duration_secs("90s").ok(), Some(90));
        assert!(parse_duration_secs("1y").is_err());
        assert!(parse_duration_secs("h").is_err());
        assert_eq!(parse_duration_secs("90").ok(), Some(90));
    }
}
