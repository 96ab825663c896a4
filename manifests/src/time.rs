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

/// Parses a duration such as `90s`, `15m`, `24h`, `30d` or `52w` into seconds.
pub fn parse_duration_secs(text: &str) -> Result<i64> {
    let bad = || {
        Error::malformed(
            "duration",
            format!("{text:?} (expected e.g. 90s, 15m, 24h, 30d, 52w)"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    number.checked_mul(unit_secs).ok_or_else(bad)
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
    }
}
