//! Timestamps in signed documents, and whether an expiry counts.
//!
//! Exactly one textual form exists, `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC, whole seconds), so
//! that parsing and printing a timestamp is the identity and a parsed document re-serialises to
//! the very bytes that were signed. This module prints it; `time` reads it (reading can fail, and
//! its errors are the crate's `Error`, which itself carries timestamps).

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Serialize, Serializer};

/// The one textual form, in chrono's notation.
pub(crate) const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// A UTC instant with one-second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub(crate) DateTime<Utc>);

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

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
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

/// Whether to refuse expired documents. Only forensic tools (`worker-release inspect`,
/// `verify --allow-expired`) ever use [`ExpirationEnforcement::Unsafe`]; the agent never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirationEnforcement {
    /// Expired documents are refused.
    Safe,
    /// Expiry is ignored.
    Unsafe,
}
