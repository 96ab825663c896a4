//! Timestamps in signed documents.
//!
//! Exactly one textual form is accepted, `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds),
//! so that parsing and printing a timestamp is the identity and a parsed document re-serialises
//! to the very bytes that were signed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A UTC instant with one-second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time, truncated to the second.
    pub fn now() -> Self {
        Self::from_unix(Utc::now().timestamp()).unwrap_or(Timestamp(DateTime::UNIX_EPOCH))
    }

    /// The instant `secs` seconds after the Unix epoch, if representable.
    pub fn from_unix(secs: i64) -> Option<Self> {
        Utc.timestamp_opt(secs, 0).single().map(Timestamp)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.timestamp()
    }

    /// This instant plus `secs` seconds (saturating at the representable range).
    pub fn plus_secs(self, secs: i64) -> Self {
        Self::from_unix(self.unix().saturating_add(secs)).unwrap_or(self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(FORMAT))
    }
}

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

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "UTC instant, RFC 3339 with whole seconds: YYYY-MM-DDTHH:MM:SSZ",
            "type": "string",
            "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
        })
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
