//! The web console at `/` in a real browser: Debian's headless Chromium, driven over the
//! DevTools protocol (`headless_chrome`), against a real `update-server` with real signed
//! releases. Screenshots go to `target/e2e-artifacts/console/`. Plus the console's security
//! headers, the admin API's refusal of cross-origin browser requests and the read-only viewer
//! token, over real HTTP.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::fleet::{token, Api};
use e2e::world::World;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

/// How long the page gets to show something (the machine is shared and loaded).
const PATIENCE: Duration = Duration::from_secs(60);

/// A headless Chromium whose network stays on loopback: every host name but 127.0.0.1 fails
/// to resolve and anything else would go through a proxy that is not there.
pub(crate) fn browser() -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from("/usr/bin/chromium")))
        .headless(true)
        // The tests run as root (CI): Chromium's sandbox needs user namespaces it may not get.
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .idle_browser_timeout(Duration::from_secs(600))
        .args(vec![
            OsStr::new("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
            OsStr::new("--proxy-server=http://127.0.0.1:9"),
            OsStr::new("--no-pings"),
            OsStr::new("--disable-component-update"),
            OsStr::new("--disable-domain-reliability"),
        ])
        .build()
        .expect("launch options");
    Browser::new(options).expect("start /usr/bin/chromium (Debian package `chromium`)")
}

/// A page of the browser with the console of `url` open.
pub(crate) fn console(browser: &Browser, url: &str) -> Arc<Tab> {
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(PATIENCE);
    tab.navigate_to(url)
        .expect("navigate")
        .wait_until_navigated()
        .expect("console loads");
    tab
}

/// Evaluates `expression` (which must yield a string) in the page.
pub(crate) fn text_of(tab: &Tab, expression: &str) -> String {
    let value = tab
        .evaluate(&format!("String({expression})"), false)
        .unwrap_or_else(|e| panic!("evaluate {expression}: {e}"))
        .value;
    match value {
        Some(serde_json::Value::String(text)) => text,
        other => panic!("{expression}: not a string: {other:?}"),
    }
}

/// The text of the first element matching `selector` ("" when there is none, or it is hidden).
pub(crate) fn visible_text(tab: &Tab, selector: &str) -> String {
    let selector = serde_json::to_string(selector).expect("json");
    text_of(
        tab,
        &format!("(e => e && !e.closest('[hidden]') ? e.textContent : '')(document.querySelector({selector}))"),
    )
}

/// Waits until `selector`'s text contains `needle`; on timeout saves a screenshot and panics.
#[track_caller]
pub(crate) fn wait_for_text(tab: &Tab, selector: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let text = visible_text(tab, selector);
        if text.contains(needle) {
            return text;
        }
        if started.elapsed() > PATIENCE {
            screenshot(tab, "timeout");
            panic!(
                "{selector} never showed {needle:?}: it shows {text:?}; page: {}",
                text_of(tab, "document.body.innerText")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clicks the element matching `selector`.
#[track_caller]
pub(crate) fn click(tab: &Tab, selector: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// Types `text` into the input matching `selector`.
#[track_caller]
pub(crate) fn type_into(tab: &Tab, selector: &str, text: &str) {
    click(tab, selector);
    tab.type_str(text)
        .unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

/// Writes a PNG of the page to `target/e2e-artifacts/console/<name>.png`.
pub(crate) fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    screenshot_into(tab, "console", name)
}

/// Writes a PNG of the page to `target/e2e-artifacts/<folder>/<name>.png`.
pub(crate) fn screenshot_into(tab: &Tab, folder: &str, name: &str) -> PathBuf {
    let dir = e2e::target_dir().join("e2e-artifacts").join(folder);
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).expect("write screenshot");
    path
}

pub(crate) fn log_in(tab: &Tab, token: &str) {
    type_into(tab, "#token", token);
    click(tab, "#login-button");
}

/// An admin logs in, sees the channels, is refused a promotion to stable by the soak gate
/// (the refusal shown), promotes a real signed release on canary, halts it with a reason and
/// sees it halted and the audit lines. A wrong token shows an error, not a blank page.
#[test]
fn an_admin_promotes_and_halts_in_the_browser_and_sees_the_audit() {
    let w = World::builder().server_args(&["--soak", "1h"]).start();
    w.publish_written(
        "1.4.0",
        "artifacts/worker-agent-1.4.0",
        "#!/bin/sh\necho 1.4.0\n",
    );
    let browser = browser();
    let tab = console(&browser, &w.server.url);

    // A wrong token: the login form stays, with the server's refusal.
    log_in(&tab, &token());
    let refused = wait_for_text(&tab, "#login-error", "401 unauthorized");
    assert!(refused.contains("not accepted"), "{refused}");
    assert_eq!(visible_text(&tab, "#channels-table"), "");
    screenshot(&tab, "wrong-token");

    log_in(&tab, &w.server.admin_token);
    wait_for_text(&tab, "#who", "ops (admin)");
    let canary = wait_for_text(&tab, "#channels-table tr[data-channel=canary]", "canary");
    assert!(canary.contains("nothing promoted"), "{canary}");
    wait_for_text(&tab, "#releases-table", "1.4.0");
    screenshot(&tab, "channels");

    // Stable first: the soak gate refuses, and the console says why.
    click(&tab, "button[data-action=promote][data-channel=stable]");
    type_into(&tab, "#action-reason", "skip canary");
    click(&tab, "#action-submit");
    wait_for_text(
        &tab,
        "#action-confirmation",
        "promote 1.4.0 on stable to 100 %",
    );
    click(&tab, "#action-confirm");
    let soak = wait_for_text(&tab, "#error", "409 soak");
    assert!(
        soak.contains("refused") && soak.contains("canary"),
        "{soak}"
    );
    screenshot(&tab, "soak-refused");
    assert_eq!(
        w.server.admin().get("/api/admin/status").json()["channels"]
            .as_array()
            .expect("channels")
            .len(),
        0,
        "nothing was promoted"
    );

    // Canary: promoted through the same admin API as the CLI.
    click(&tab, "button[data-action=promote][data-channel=canary]");
    type_into(&tab, "#action-reason", "canary for the encoders");
    click(&tab, "#action-submit");
    click(&tab, "#action-confirm");
    wait_for_text(&tab, "#notice", "done: promote 1.4.0 on canary to 100 %");
    let row = wait_for_text(&tab, "#channels-table tr[data-channel=canary]", "1.4.0");
    assert!(row.contains("100 %") && row.contains("live"), "{row}");
    screenshot(&tab, "promoted");

    // Halt with a reason, confirmed; the row shows it halted with the reason.
    click(&tab, "button[data-action=halt][data-channel=canary]");
    type_into(&tab, "#action-reason", "encoder crash on 1.4.0");
    click(&tab, "#action-submit");
    wait_for_text(&tab, "#action-confirmation", "halt channel canary");
    click(&tab, "#action-confirm");
    let halted = wait_for_text(
        &tab,
        "#channels-table tr[data-channel=canary]",
        "encoder crash on 1.4.0",
    );
    assert!(halted.contains("halted"), "{halted}");
    wait_for_text(
        &tab,
        "button[data-action=resume][data-channel=canary]",
        "Resume",
    );
    screenshot(&tab, "halted");
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(status["channels"][0]["halted"], true, "{status}");

    // The audit log, filtered to the canary channel's halts.
    click(&tab, "nav a[href='#/audit']");
    wait_for_text(&tab, "#audit-table", "halt");
    type_into(&tab, "#audit-channel", "canary");
    type_into(&tab, "#audit-kind", "halt");
    click(&tab, "#audit-apply");
    wait_for_text(&tab, "#audit-table tbody", "encoder crash on 1.4.0");
    let audit = visible_text(&tab, "#audit-table tbody");
    assert!(audit.contains("ops"), "{audit}");
    assert!(
        !audit.contains("canary for the encoders"),
        "filtered: {audit}"
    );
    assert!(text_of(&tab, "location.hash").contains("kind=halt"));
    // The token never reaches a URL.
    assert!(!text_of(&tab, "location.href").contains(&w.server.admin_token));
    screenshot(&tab, "audit");
}

/// A viewer token (`--viewer-token-file`) reads everything the admin API shows, is refused
/// every action (403 `read_only`), and the console offers it no action.
#[test]
fn a_viewer_token_sees_but_cannot_act() {
    let tokens = tempfile::tempdir().expect("tempdir");
    let viewer_token = token();
    let file = tokens.path().join("viewer.tokens");
    std::fs::write(&file, format!("# on-call\noncall={viewer_token}\n")).expect("tokens");
    let w = World::builder()
        .server_args(&["--viewer-token-file", &file.to_string_lossy()])
        .start();
    w.publish_written(
        "1.4.0",
        "artifacts/worker-agent-1.4.0",
        "#!/bin/sh\necho 1.4.0\n",
    );
    w.server.promote("canary", "1.4.0", 50);
    let viewer = w.server.admin().with_token(Some(&viewer_token));
    for path in [
        "/api/admin/status",
        "/api/admin/audit?channel=canary",
        "/api/admin/channels",
        "/api/admin/releases",
    ] {
        assert_eq!(viewer.get(path).status, 200, "{path}");
    }
    let session = viewer.get("/api/admin/session").json();
    assert_eq!(
        (&session["name"], &session["role"], &session["may_act"]),
        (
            &serde_json::json!("oncall"),
            &serde_json::json!("viewer"),
            &serde_json::json!(false)
        )
    );
    for (path, body) in [
        (
            "/api/admin/channels/canary/halt",
            serde_json::json!({"reason": "x"}),
        ),
        (
            "/api/admin/channels/canary/promote",
            serde_json::json!({"version": "1.4.0", "percent": 100, "reason": "x"}),
        ),
        ("/api/admin/channels", serde_json::json!({"name": "edge"})),
    ] {
        let reply = viewer.post_json(path, &body);
        assert_eq!(reply.status, 403, "{path}: {}", reply.text());
        assert_eq!(reply.json()["reason"], "read_only", "{path}");
        assert!(reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("viewer token \"oncall\" may only read"));
    }
    let reply = viewer.send(reqwest::Method::DELETE, "/api/admin/workers/w1", |r| r);
    assert_eq!(
        (reply.status, reply.json()["reason"].as_str()),
        (403, Some("read_only"))
    );
    let status = w.server.admin().get("/api/admin/status").json();
    assert_eq!(status["channels"][0]["halted"], false, "nothing was halted");
    // A viewer token is no worker token either.
    let latest = viewer.latest("canary", "1.0.0", "w1");
    assert_eq!(latest.status, 403, "{}", latest.text());

    let browser = browser();
    let tab = console(&browser, &w.server.url);
    log_in(&tab, &viewer_token);
    wait_for_text(&tab, "#who", "oncall (viewer, read-only)");
    let row = wait_for_text(&tab, "#channels-table tr[data-channel=canary]", "1.4.0");
    assert!(row.contains("50 %") && row.contains("read-only"), "{row}");
    assert_eq!(
        text_of(
            &tab,
            "document.querySelectorAll('button[data-action]').length"
        ),
        "0",
        "a viewer is offered no action"
    );
    screenshot(&tab, "viewer");
}

/// The console's responses carry a strict CSP (no inline code) and refuse framing; its page
/// holds no inline script or style; the admin API answers another site's browser requests
/// 403 `cross_origin` with no CORS header, while the CLI (no browser headers) and the console
/// itself (same origin) pass.
#[test]
fn the_console_is_locked_down_and_the_admin_api_refuses_other_origins() {
    let w = World::new();
    let anonymous = Api::new(&w.server.url, None);
    for (path, content_type) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
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
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            reply.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
    let page = anonymous.get("/").text();
    assert!(page.contains("<script src=\"/console/console.js\" defer></script>"));
    assert_eq!(
        page.matches("<script").count(),
        1,
        "no inline script: {page}"
    );
    assert!(!page.contains("<style") && !page.contains(" style=") && !page.contains(" onclick="));

    let admin = w.server.admin();
    let host = w.server.url.trim_start_matches("http://").to_owned();
    // The CLI's requests and the console's own (same origin) pass.
    assert_eq!(admin.get("/api/admin/status").status, 200);
    let own = admin.send(reqwest::Method::POST, "/api/admin/channels", |r| {
        r.header("Origin", format!("http://{host}"))
            .header("Sec-Fetch-Site", "same-origin")
            .json(&serde_json::json!({"name": "edge"}))
    });
    assert_eq!(own.status, 201, "{}", own.text());
    for (what, headers) in [
        (
            "another origin",
            vec![("Origin", "http://evil.test".to_owned())],
        ),
        ("an opaque origin", vec![("Origin", "null".to_owned())]),
        (
            "Sec-Fetch-Site: cross-site",
            vec![("Sec-Fetch-Site", "cross-site".to_owned())],
        ),
        (
            "another port of this host",
            vec![("Origin", "http://127.0.0.1:1".to_owned())],
        ),
    ] {
        for (method, path) in [
            (reqwest::Method::GET, "/api/admin/status"),
            (reqwest::Method::POST, "/api/admin/channels/canary/halt"),
        ] {
            let headers = headers.clone();
            let reply = admin.send(method.clone(), path, move |r| {
                let mut r = r.json(&serde_json::json!({"reason": "from another site"}));
                for (name, value) in headers {
                    r = r.header(name, value);
                }
                r
            });
            assert_eq!(reply.status, 403, "{what} {method}: {}", reply.text());
            assert_eq!(reply.json()["reason"], "cross_origin", "{what}");
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("cross-origin requests to the admin API are refused"),
                "{}",
                reply.text()
            );
            assert!(
                !reply
                    .headers
                    .keys()
                    .any(|k| k.starts_with("access-control-")),
                "{what}: {:?}",
                reply.headers
            );
        }
    }
    // A CORS preflight gets no CORS grant either.
    let preflight = admin.send(reqwest::Method::OPTIONS, "/api/admin/status", |r| {
        r.header("Origin", "http://evil.test")
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
    });
    assert!(preflight.status >= 400, "{preflight:?}");
    assert!(
        !preflight
            .headers
            .keys()
            .any(|k| k.starts_with("access-control-")),
        "{:?}",
        preflight.headers
    );
    let log = w.server.log();
    assert!(
        log.contains("cross_origin"),
        "the refusal is logged with its reason"
    );
}
