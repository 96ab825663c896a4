//! The OpenAPI description served at `/openapi.json` (kept in `update-server/openapi.json`; a
//! test checks it lists every route the router has).

/// The document.
pub const DOCUMENT: &str = include_str!("../openapi.json");
