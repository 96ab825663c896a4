//! The browsable API page at `/docs` in a real browser (Debian's headless Chromium over the
//! DevTools protocol) against a real `update-server`: it lists every operation of the generated
//! `/openapi.json`, and "Try it" sends a live GET with the token of this tab. Screenshots go to
//! `target/e2e-artifacts/docs/`. Plus the page's security headers over real HTTP.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::fleet::Api;
use e2e::world::World;
use headless_chrome::Tab;

use crate::console::{browser, screenshot_into, text_of};

/// How long the page gets to show something (the machine is shared and loaded).
const PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `expression` yields `"true"`; on timeout saves a screenshot and panics.
#[track_caller]
fn wait_until(tab: &Tab, what: &str, expression: &str) {
    let started = Instant::now();
    while text_of(tab, expression) != "true" {
        if started.elapsed() > PATIENCE {
            screenshot(tab, "timeout");
            panic!(
                "{what} never happened; page: {}",
                text_of(tab, "document.body.innerText")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a PNG of the page to `target/e2e-artifacts/docs/<name>.png`.
fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    screenshot_into(tab, "docs", name)
}

/// A JavaScript string literal of `text`.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("json")
}

#[test]
fn docs_page_lists_every_operation_and_tries_one_live() {
    let w = World::new();
    let anonymous = Api::new(&w.server.url, None);
    let document = anonymous.get("/openapi.json").json();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            operations.push((method.clone(), path.clone()));
        }
    }
    assert!(operations.len() >= 30, "{operations:?}");

    let browser = browser();
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(PATIENCE);
    tab.navigate_to(&format!("{}/docs", w.server.url))
        .expect("navigate")
        .wait_until_navigated()
        .expect("/docs loads");
    wait_until(
        &tab,
        "the operations are rendered",
        &format!(
            "document.querySelectorAll('details.op').length === {}",
            operations.len()
        ),
    );
    for (method, path) in &operations {
        let selector = format!(
            "details.op[data-method={}][data-path={}]",
            js(method),
            js(path)
        );
        assert_eq!(
            text_of(
                &tab,
                &format!("document.querySelector({}) !== null", js(&selector))
            ),
            "true",
            "/docs does not show {method} {path}"
        );
    }
    // Grouped by tag, with the schemas rendered (the status answer's fields, the error envelope).
    for tag in ["open", "worker", "enrolment", "admin", "console"] {
        assert_eq!(
            text_of(
                &tab,
                &format!("document.getElementById('tag-' + {}) !== null", js(tag))
            ),
            "true",
            "no section for tag {tag}"
        );
    }
    let status_op = "document.querySelector('details.op[data-method=\"get\"][data-path=\"/api/admin/status\"]')";
    let status_text = text_of(&tab, &format!("{status_op}.textContent"));
    for field in ["workers_total", "failures_last_hour", "ErrorBody", "reason"] {
        assert!(
            status_text.contains(field),
            "{field} not shown: {status_text}"
        );
    }
    // No inline script: every script of the page is a file of this origin.
    assert_eq!(
        text_of(
            &tab,
            "[...document.scripts].every(s => s.src.endsWith('/docs/api-docs.js'))"
        ),
        "true"
    );
    screenshot(&tab, "operations");

    // "Try it" without a token: the API's own 401 envelope is shown.
    tab.evaluate(&format!("{status_op}.open = true"), false)
        .expect("open");
    tab.evaluate(
        &format!("{status_op}.querySelector('button.send').click()"),
        false,
    )
    .expect("send");
    wait_until(
        &tab,
        "the 401 answer is shown",
        &format!("{status_op}.querySelector('pre.result').dataset.status === '401'"),
    );
    // With the admin token, kept in this tab's sessionStorage: 200 and the real status.
    tab.wait_for_element("#token")
        .expect("token field")
        .click()
        .expect("click");
    tab.type_str(&w.server.admin_token).expect("type token");
    tab.wait_for_element("#token-save")
        .expect("save")
        .click()
        .expect("click");
    assert_eq!(
        text_of(
            &tab,
            "sessionStorage.getItem('update-server-console-token') !== null"
        ),
        "true"
    );
    tab.evaluate(
        &format!("{status_op}.querySelector('button.send').click()"),
        false,
    )
    .expect("send");
    wait_until(
        &tab,
        "the 200 answer is shown",
        &format!("{status_op}.querySelector('pre.result').dataset.status === '200'"),
    );
    let result = text_of(
        &tab,
        &format!("{status_op}.querySelector('pre.result').textContent"),
    );
    assert!(
        result.starts_with("200")
            && result.contains("\"root_version\"")
            && result.contains("\"channels\""),
        "{result}"
    );
    assert!(
        !text_of(&tab, "location.href").contains(&w.server.admin_token),
        "the token is never in a URL"
    );
    tab.evaluate(&format!("{status_op}.scrollIntoView()"), false)
        .expect("scroll");
    screenshot(&tab, "try-it");
}

#[test]
fn docs_page_has_the_console_security_headers() {
    let w = World::new();
    let anonymous = Api::new(&w.server.url, None);
    let console = anonymous.get("/");
    for (path, content_type) in [
        ("/docs", "text/html"),
        ("/docs/api-docs.js", "text/javascript"),
        ("/docs/api-docs.css", "text/css"),
    ] {
        let reply = anonymous.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply
                .header("content-type")
                .unwrap_or_default()
                .starts_with(content_type),
            "{path}: {:?}",
            reply.headers
        );
        for header in [
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
            "referrer-policy",
        ] {
            assert!(reply.header(header).is_some(), "{path}: no {header}");
            assert_eq!(
                reply.header(header),
                console.header(header),
                "{path}: {header}"
            );
        }
    }
    let page = anonymous.get("/docs").text();
    assert!(page.contains("<script src=\"/docs/api-docs.js\" defer></script>"));
    assert_eq!(page.matches("<script").count(), 1, "{page}");
}
