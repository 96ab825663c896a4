//! The generated `/openapi.json` against the real router and real answers of a running
//! `update-server`.

use e2e::fleet::{Api, PLATFORM};
use e2e::world::World;
use manifests::Timestamp;

/// HTTP methods a route may have (HEAD comes with every GET).
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `schema` with its `$ref` followed, and `Option<T>`'s `oneOf [null, T]` reduced to `T`.
fn resolved<'a>(
    document: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let mut node = document;
        for part in reference.trim_start_matches("#/").split('/') {
            node = &node[part];
        }
        return resolved(document, node);
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        if let Some(other) = variants.iter().find(|v| v["type"] != "null") {
            return resolved(document, other);
        }
    }
    schema
}

/// Where `value` (a real answer) disagrees with `schema`: fields the document does not list,
/// required fields the answer lacks, at any depth.
fn disagreements(
    document: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
    found: &mut Vec<String>,
) {
    let schema = resolved(document, schema);
    match value {
        serde_json::Value::Object(fields) => {
            let Some(properties) = schema["properties"].as_object() else {
                return; // an object the document leaves open (a signed document's `signed`)
            };
            for (name, field) in fields {
                match properties.get(name) {
                    Some(property) => {
                        disagreements(document, property, field, &format!("{at}.{name}"), found);
                    }
                    None => found.push(format!("{at}.{name} is not documented")),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    found.push(format!(
                        "{at}.{name} is required by the document but absent"
                    ));
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                disagreements(
                    document,
                    &schema["items"],
                    item,
                    &format!("{at}[{i}]"),
                    found,
                );
            }
        }
        _ => {}
    }
}

/// Checks a real JSON answer of `method path` against the document's schema for its status.
#[track_caller]
fn assert_documented(
    document: &serde_json::Value,
    method: &str,
    path: &str,
    status: u16,
    answer: &serde_json::Value,
) {
    let schema = &document["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} {status}: no JSON schema in /openapi.json"
    );
    let mut found = Vec::new();
    disagreements(document, schema, answer, "", &mut found);
    assert!(
        found.is_empty(),
        "{method} {path} {status} answered {answer:#}, unlike /openapi.json: {found:#?}"
    );
}

/// The generated /openapi.json against the real router: every documented operation is routed
/// (it answers 200, or 401 without a token; never 404 or 405), every other method of a
/// documented path answers 405 (the router has nothing the document lacks; the unit test
/// `openapi::tests::no_route_bypasses_the_document` forbids routes outside `routes!`), every
/// operation documents the error envelope, and real answers have exactly the documented fields.
#[test]
fn every_documented_route_is_served_and_errors_are_json() {
    let w = World::new();
    let anonymous = Api::new(&w.server.url, None);
    let admin = w.server.admin();
    let worker = w.server.worker();
    let document = anonymous.get("/openapi.json").json();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 25, "{paths:?}");
    for (path, item) in paths {
        let concrete = path
            .replace("{file}", "1.json")
            .replace("{sha256}", &"ab".repeat(32))
            .replace("{channel}", "stable")
            .replace("{worker_id}", "nobody")
            .replace("{id}", "nothing");
        for method in METHODS {
            let verb =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let reply = anonymous.send(verb.clone(), &concrete, |r| r);
            match item.get(method) {
                Some(operation) => {
                    // Open routes answer 200; protected ones refuse the missing token.
                    assert!(
                        reply.status == 200 || reply.status == 401,
                        "{method} {concrete}: {} {}",
                        reply.status,
                        reply.text()
                    );
                    for errors in ["4XX", "5XX"] {
                        assert!(
                            operation["responses"][errors]["$ref"]
                                == "#/components/responses/Error",
                            "{method} {path}: no {errors} error envelope"
                        );
                    }
                }
                None => {
                    // Past authentication (admin token, else worker token), an undocumented
                    // method of a documented path is no route.
                    let mut reply = reply;
                    if reply.status == 401 {
                        reply = admin.send(verb.clone(), &concrete, |r| r);
                    }
                    if reply.status == 403 {
                        reply = worker.send(verb.clone(), &concrete, |r| r);
                    }
                    assert_eq!(
                        reply.status,
                        405,
                        "{method} {concrete} is served but not documented: {}",
                        reply.text()
                    );
                }
            }
        }
    }
    let error = &document["components"]["schemas"]["ErrorBody"];
    assert_eq!(
        error["required"],
        serde_json::json!(["error", "reason"]),
        "{error}"
    );
    for scheme in ["adminToken", "viewerToken", "workerToken", "joinToken"] {
        assert_eq!(
            document["components"]["securitySchemes"][scheme]["scheme"], "bearer",
            "{scheme}"
        );
    }
    let root_params = document["paths"]["/api/admin/roots"]["post"]["parameters"]
        .as_array()
        .expect("parameters of POST /api/admin/roots");
    assert!(
        root_params
            .iter()
            .any(|p| p["name"] == "allow_weaker" && p["in"] == "query"),
        "{root_params:?}"
    );

    // Real answers, with something in them: a release promoted, a worker that polled,
    // registered and reported, a join token.
    let artifact = w.sandbox.write("artifact.bin", b"an artifact");
    let (release, _) = w
        .trust
        .sign_release("1.4.0", "0.0.0", &[(PLATFORM, &artifact)]);
    let published = admin.post_bytes(
        "/api/admin/releases",
        release.to_json_pretty().expect("json"),
    );
    assert_documented(
        &document,
        "post",
        "/api/admin/releases",
        published.status,
        &published.json(),
    );
    let sha = &release.signed.artifacts[0].sha256;
    let uploaded = admin.put_bytes(
        &format!("/api/admin/artifacts/{sha}"),
        b"an artifact".to_vec(),
    );
    assert_documented(
        &document,
        "put",
        "/api/admin/artifacts/{sha256}",
        uploaded.status,
        &uploaded.json(),
    );
    let promoted = w.server.promote("canary", "1.4.0", 100);
    assert_documented(
        &document,
        "post",
        "/api/admin/channels/{channel}/promote",
        200,
        &promoted,
    );
    let latest = worker.latest("canary", "1.0.0", "w-doc");
    assert_documented(
        &document,
        "get",
        "/api/worker-updates/latest",
        latest.status,
        &latest.json(),
    );
    let registered = worker.post_json(
        "/api/workers/register",
        &serde_json::json!({"worker_id": "w-doc", "current_version": "1.0.0", "platform": PLATFORM, "channel": "canary"}),
    );
    assert_documented(
        &document,
        "post",
        "/api/workers/register",
        registered.status,
        &registered.json(),
    );
    let reported = worker.post_json(
        "/api/worker-updates/report",
        &serde_json::json!({"worker_id": "w-doc", "correlation_id": "c-1", "from_version": "1.0.0",
            "to_version": "1.4.0", "outcome": "failure", "reason": "probation_failed",
            "at": Timestamp::now().to_string()}),
    );
    assert_documented(
        &document,
        "post",
        "/api/worker-updates/report",
        reported.status,
        &reported.json(),
    );
    let join = admin.post_json("/api/admin/enroll-tokens", &serde_json::json!({"uses": 2}));
    assert_documented(
        &document,
        "post",
        "/api/admin/enroll-tokens",
        join.status,
        &join.json(),
    );
    for path in [
        "/healthz",
        "/api/admin/status",
        "/api/admin/channels",
        "/api/admin/releases",
        "/api/admin/audit",
        "/api/admin/session",
        "/api/admin/enroll-tokens",
    ] {
        let reply = admin.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_documented(&document, "get", path, 200, &reply.json());
    }
    let status = admin.get("/api/admin/status").json();
    assert!(
        status["workers"].as_array().is_some_and(|w| !w.is_empty())
            && status["failures_last_hour"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
        "the status answer checked has workers and failures: {status:#}"
    );
    // An error answer is the documented envelope.
    let refused = admin.post_json("/api/admin/channels/nope/halt", &serde_json::json!({}));
    assert!(refused.status >= 400, "{refused:?}");
    let mut found = Vec::new();
    disagreements(
        &document,
        &document["components"]["responses"]["Error"]["content"]["application/json"]["schema"],
        &refused.json(),
        "",
        &mut found,
    );
    assert!(found.is_empty(), "{}: {found:?}", refused.text());
    let unknown = anonymous.get("/api/nope");
    assert_eq!(
        (unknown.status, unknown.json()["reason"].as_str()),
        (404, Some("not_found"))
    );
    // A malformed body gets the same JSON error shape.
    let reply = w
        .server
        .worker()
        .post_bytes("/api/workers/register", b"{\"worker_id\": 3".to_vec());
    assert!(
        reply.status == 400 || reply.status == 415 || reply.status == 422,
        "{}",
        reply.status
    );
    assert_eq!(reply.json()["reason"], "bad_request");
}
