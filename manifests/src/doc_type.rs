//! The `type` tag every document carries, which is also part of what its signatures cover.

/// The four document types, as written in each document's `type` field.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DocType {
    /// `root`
    Root,
    /// `release`
    Release,
    /// `channel`
    Channel,
    /// `rollback`
    Rollback,
}

impl DocType {
    /// The type tag.
    pub const fn as_str(self) -> &'static str {
        match self {
            DocType::Root => "root",
            DocType::Release => "release",
            DocType::Channel => "channel",
            DocType::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for DocType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
