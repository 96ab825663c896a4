//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the code: every route is
//! added to the router with `utoipa_axum::routes!` from a handler annotated with
//! `#[utoipa::path]`, so the router and the document are built from the same list (see
//! [`crate::http::router`]). This module holds what no single handler says: the title, the
//! security schemes, the error envelope every operation may answer, and the tags.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

use crate::http::schemas::ErrorBody;

/// Name of the shared error response in `components.responses`.
const ERROR_RESPONSE: &str = "Error";

/// The document's fixed part.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "update-server",
        description = "Signed channel statements, release manifests and artifacts for \
            worker-agent fleets. Generated from the code; see wiki/operations/update-server-api.md. \
            Browsable at /docs."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "open", description = "No token: health, metrics, this document"),
        (name = "worker", description = "Worker API: a shared worker token or an enrolled credential"),
        (name = "enrolment", description = "Per-worker enrolment: a join token, or the admin API's join tokens"),
        (name = "admin", description = "Admin API: an admin token; a viewer token may GET only (403 read_only otherwise). Another site's browser requests answer 403 cross_origin"),
        (name = "console", description = "The web console and this API page: static assets with a strict CSP"),
    )
)]
struct Fixed;

/// The bearer-token kinds (`Authorization: Bearer <token>`).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("adminToken", "a token from --admin-token-file"),
            (
                "viewerToken",
                "a token from --viewer-token-file: GET routes of the admin API only; other \
                 methods answer 403 read_only",
            ),
            (
                "workerToken",
                "a shared token from --worker-token-file, or an enrolled worker's own credential \
                 (POST /api/workers/enroll)",
            ),
            (
                "joinToken",
                "a join token from POST /api/admin/enroll-tokens (worker-release enroll-token)",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        components.responses.insert(
            ERROR_RESPONSE.to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "refused: `reason` is a stable label (e.g. unauthorized, forbidden, \
                         read_only, cross_origin, soak, not_found, rate_limited), `error` one \
                         readable sentence",
                    )
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
    }
}

/// The document's start: title, tags, security schemes, the error envelope.
pub fn base() -> OpenApi {
    Fixed::openapi()
}

/// What every operation may answer besides what its handler says: the error envelope, for any
/// 4xx and 5xx (authentication, limits and axum's own rejections apply to every route).
pub fn finish(mut document: OpenApi) -> OpenApi {
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            for status in ["4XX", "5XX"] {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        RefOr::Ref(Ref::new(format!("#/components/responses/{ERROR_RESPONSE}")))
                    });
            }
        }
    }
    document
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every route reaches the router through `utoipa_axum::routes!` (so it is in the document):
    /// no source file of the server adds one with axum's own `route`, `route_service`, `nest` or
    /// `nest_service`. The e2e test `openapi::every_documented_route_is_served_and_errors_are_json`
    /// checks the other direction against the running server.
    #[test]
    fn no_route_bypasses_the_document() {
        // Spelled in two pieces so this file does not match itself.
        let needles = [".route", ".nest"].map(|stem| {
            [
                format!("{stem}("),
                format!("{stem}_service("),
                format!("{stem}::<"),
            ]
        });
        let mut offenders = Vec::new();
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("read source");
                    for (number, line) in text.lines().enumerate() {
                        let code = line.split("//").next().unwrap_or("");
                        if needles.iter().flatten().any(|n| code.contains(n.as_str())) {
                            offenders.push(format!("{}:{}: {line}", path.display(), number + 1));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "add routes with `.routes(routes!(handler))` from a `#[utoipa::path]` handler, so \
             /openapi.json lists them:\n{}",
            offenders.join("\n")
        );
    }
}
