//! The dashboard's API (who am I, the overview) and its files as the server serves them.

use axum::http::StatusCode;
use certctl::auth::Role;
use certctl::plugins::grants::Grants;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, key_of};
use crate::lifecycle::{get, run_jobs};
use crate::sandbox::shipped_dir;

/// The overview's numbers are the certificate list's, per status; the activity counts today's
/// issuances; the timeline holds the issued certificates.
async fn the_overview_agrees_with_the_lists(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir()], Grants::default()).await;
    let issuer = app.issuer("internal").await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let (status, body) = app
            .admin(
                "POST",
                "/api/v1/certificates",
                Some(json!({"name": name, "common_name": format!("{name}.example.test"),
                            "issuer_id": issuer, "key_generation": "server"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    app.certificate("waiting", "waiting.example.test").await;
    while run_jobs(&app).await > 0 {}
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/certificates/{}/revoke", ids[0]),
            Some(json!({"reason": "superseded"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    while run_jobs(&app).await > 0 {}

    let overview = get(&app, "/api/v1/overview").await;
    let counts = &overview["certificates"];
    assert_eq!(counts["total"], 4, "{overview}");
    for status in ["pending", "active", "expiring", "expired", "revoked", "failed"] {
        let listed = get(&app, &format!("/api/v1/certificates?status={status}&limit=500")).await;
        let n = listed["items"].as_array().map_or(0, Vec::len);
        assert_eq!(counts[status], n, "{status}: {overview}");
    }
    assert_eq!(
        (counts["active"].as_i64(), counts["revoked"].as_i64()),
        (Some(2), Some(1))
    );
    let in_timeline: i64 = overview["expiry_timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(in_timeline, 2, "the two issued, unrevoked certificates: {overview}");
    let activity = overview["activity"].as_array().expect("activity");
    assert_eq!(activity.len(), 30);
    assert_eq!(activity[29]["day"], 0);
    assert_eq!(activity[29]["issued"], 3, "today: {overview}");
    assert_eq!(overview["agents"], json!({"total": 0, "online": 0, "offline": 0}));
    assert_eq!(overview["plugins"]["failing"], json!([]));
    let plugins = get(&app, "/api/v1/plugins").await;
    let local_ca = plugins["plugins"]
        .as_array()
        .or_else(|| plugins.as_array())
        .and_then(|l| l.iter().find(|p| p["name"] == "local-ca").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(local_ca["status"], "ok", "{plugins}");
    assert!(local_ca["calls"].as_u64().unwrap_or(0) >= 3, "{local_ca}");

    // Viewers read the overview and learn they cannot write.
    let (status, me) = app
        .call("GET", "/api/v1/whoami", Some(key_of(Role::Viewer)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("viewer-key"), Some("viewer"))
    );
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        perms.contains(&"certificates.read") && !perms.contains(&"certificates.write"),
        "{me}"
    );
    let (status, _) = app
        .call("GET", "/api/v1/overview", Some(key_of(Role::Viewer)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call("GET", "/api/v1/whoami", Some("not-a-key-at-all-0000"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The list's new parameters name what is wrong.
    for (query, field) in [
        ("sort=expiry", "sort"),
        ("expires_after=yesterday", "expires_after"),
        ("expires_before=2026-13-01T00:00:00Z", "expires_before"),
        ("sort=name&cursor=garbage", "cursor"),
    ] {
        let (status, body) = app.admin("GET", &format!("/api/v1/certificates?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let sorted = get(&app, "/api/v1/certificates?sort=-name").await;
    let names: Vec<&str> = sorted["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["waiting", "two", "three", "one"]);
}

crate::on_both_backends!(the_overview_agrees_with_the_lists);

/// `/` is the dashboard, with headers that keep scripts to the server's own files.
#[tokio::test]
async fn the_dashboard_files_are_served_with_a_strict_policy() {
    let app = TestApp::new(Backend::Sqlite).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let (status, h, _) = app.raw(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(
            header("content-type").starts_with(kind),
            "{path}: {}",
            header("content-type")
        );
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    for path in ["/ui/index.html", "/ui/../Cargo.toml", "/ui/missing.js"] {
        assert_eq!(app.raw(path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}

/// Screenshots are kept in `<target>/tmp/dashboard-screenshots/` for people to look at.
async fn screenshot(b: &crate::browser::Browser, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    b.screenshot_to(&dir.join(format!("{name}.png"))).await;
}

const ADMIN_KEY: &str = "dashboard-test-admin-key-01";
const VIEWER_KEY: &str = "dashboard-test-viewer-key-1";

async fn sign_in(b: &crate::browser::Browser, url: &str, key: &str) {
    b.goto(&format!("{url}/")).await;
    b.fill("#api-key", key).await;
    b.click("#signin-submit").await;
    b.wait("#whoami", 20).await;
}

/// Console entries at warning level or worse, other than the ones listed as expected.
async fn console_problems(b: &crate::browser::Browser) -> Vec<(String, String)> {
    b.console()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect()
}

/// The dashboard in a real headless Chromium against the real server binary: a bad key is
/// told so; the overview's numbers are the API's; an issuer and a certificate created from the
/// UI; the certificate becomes active with its job's steps shown; renewed (a second version);
/// revoked with a reason; the audit page lists all of it; a viewer sees no write action;
/// every page is screenshotted (at 1280 and 375 px) without console errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    use crate::browser::Browser;
    use crate::server::ServerProcess;
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(
        dir.path(),
        &["local-ca", "webhook"],
        &[
            (
                "CERTCTL_API_KEYS_NAMED",
                format!("ops:{ADMIN_KEY}:admin,auditor:{VIEWER_KEY}:viewer"),
            ),
            ("CERTCTL_SCHEDULER_JOB_INTERVAL", "1".into()),
        ],
    )
    .await;
    let url = server.url.clone();
    let b = Browser::start(1280, 900).await;

    // A wrong key: a clear message, and no way in.
    b.goto(&format!("{url}/")).await;
    screenshot(&b, "01-sign-in").await;
    b.fill("#api-key", "this-is-not-a-valid-key").await;
    b.click("#signin-submit").await;
    b.wait("#signin-error:not(:empty)", 10).await;
    let error = b.text("#signin-error").await;
    assert!(error.contains("not accepted"), "{error}");
    assert!(b.find("#whoami").await.is_none());
    screenshot(&b, "02-sign-in-bad-key").await;
    b.console().await; // the refused request's 401 is expected here

    // The overview's numbers are the API's.
    b.fill("#api-key", ADMIN_KEY).await;
    b.click("#signin-submit").await;
    b.ready("overview").await;
    assert_eq!(b.text("#whoami").await, "ops (admin)");
    let key_in_storage = b
        .js(
            "return [sessionStorage.length > 0, localStorage.length, document.cookie, location.href]",
            json!([]),
        )
        .await;
    assert_eq!(key_in_storage[0], true, "the key is kept in session storage");
    assert_eq!(key_in_storage[1], 0, "nothing in local storage");
    assert_eq!(key_in_storage[2], "", "no cookie");
    assert!(
        !key_in_storage[3].as_str().unwrap_or("").contains(ADMIN_KEY),
        "never in the URL"
    );

    // An issuer from the UI, with the plugin's form.
    b.click("a[data-nav=\"issuers\"]").await;
    b.ready("issuers").await;
    b.click("#new-instance").await;
    b.fill("#instance-name", "internal").await;
    b.select("#instance-plugin", "local-ca").await;
    b.wait("#instance-form [name^=\"config.\"]", 10).await;
    b.click("#instance-submit").await;
    b.wait("#instances-table tr[data-name=\"internal\"]", 20).await;
    screenshot(&b, "03-issuers").await;

    // A certificate from the UI: it becomes active, and its job's steps were shown.
    b.click("a[data-nav=\"certificates\"]").await;
    b.ready("certificates").await;
    b.click("#new-certificate").await;
    b.fill("#cert-name", "shop").await;
    b.fill("#cert-common-name", "shop.example.test").await;
    b.fill("#cert-sans", "www.shop.example.test").await;
    b.select("#cert-issuer", "internal").await;
    if b.find("#cert-key-generation").await.is_some() {
        b.select("#cert-key-generation", "server").await;
    }
    b.click("#certificate-submit").await;
    b.ready("certificate").await;
    b.wait("#job-progress li[data-step]", 30).await;
    let mut status = String::new();
    for _ in 0..600 {
        status = b.text("#certificate-detail [data-field=\"status\"]").await;
        if status == "active" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "active", "{}", server.log_text());
    b.wait("#versions [data-serial]", 20).await;
    screenshot(&b, "04-certificate-active").await;
    let cert_id = b
        .js("return location.hash.split('/').pop()", json!([]))
        .await
        .as_str()
        .expect("id")
        .to_string();

    // Renew: a second version appears.
    b.click("#action-renew").await;
    for _ in 0..600 {
        if b.count("#versions [data-serial]").await >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(b.count("#versions [data-serial]").await, 2, "renewed");
    let (_, versions) = server
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/certificates/{cert_id}/versions"),
            ADMIN_KEY,
            None,
        )
        .await;
    let serial = versions[0]["serial"].as_str().expect("serial");
    assert!(
        b.find(&format!("#versions [data-serial=\"{serial}\"]")).await.is_some(),
        "{versions}"
    );

    // Revoke with a reason.
    b.click("#action-revoke").await;
    b.wait("#revoke-dialog[open]", 10).await;
    b.select("#revoke-reason", "keyCompromise").await;
    b.click("#revoke-confirm").await;
    for _ in 0..300 {
        status = b.text("#certificate-detail [data-field=\"status\"]").await;
        if status == "revoked" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "revoked");
    screenshot(&b, "05-certificate-revoked").await;

    // The overview agrees with the API now that there is something to count.
    b.click("a[data-nav=\"overview\"]").await;
    b.ready("overview").await;
    let (_, overview) = server
        .call(reqwest::Method::GET, "/api/v1/overview", ADMIN_KEY, None)
        .await;
    for key in ["total", "active", "expiring", "expired", "revoked", "failed"] {
        let shown = b.text(&format!("[data-count=\"{key}\"]")).await;
        assert_eq!(shown, overview["certificates"][key].to_string(), "{key}: {overview}");
    }
    screenshot(&b, "06-overview").await;

    // The audit trail shows what was done from the UI.
    b.click("a[data-nav=\"audit\"]").await;
    b.ready("audit").await;
    let audit = b.text("#audit-table").await;
    for action in [
        "issuer.create",
        "certificate.create",
        "job.renewal",
        "certificate.revoke",
    ] {
        assert!(audit.contains(action), "{action} in:\n{audit}");
    }

    // Every page renders, without console errors, and is kept as a screenshot.
    for (n, page) in [
        "overview",
        "certificates",
        "issuers",
        "dns-solvers",
        "notifiers",
        "plugins",
        "jobs",
        "agents",
        "discoveries",
        "audit",
        "notifications",
    ]
    .iter()
    .enumerate()
    {
        b.click(&format!("a[data-nav=\"{page}\"]")).await;
        b.ready(page).await;
        screenshot(&b, &format!("1{n:02}-{page}")).await;
    }
    b.goto(&format!("{url}/#/certificates/{cert_id}")).await;
    b.ready("certificate").await;
    screenshot(&b, "120-certificate-detail").await;
    let problems = console_problems(&b).await;
    assert!(problems.is_empty(), "console: {problems:?}");
    b.click("#signout").await;
    b.wait("#signin", 10).await;
    drop(b);

    // A viewer: the same pages, no write action anywhere; a narrow screen works.
    let b = Browser::start(500, 800).await;
    b.emulate_phone(375, 800).await;
    sign_in(&b, &url, VIEWER_KEY).await;
    let width = b.js("return document.documentElement.clientWidth", json!([])).await;
    assert_eq!(width, 375, "laid out at phone width");
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert_eq!(
        overflow, false,
        "nothing wider than the screen (tables scroll inside their wrapper)"
    );
    b.ready("overview").await;
    screenshot(&b, "201-narrow-overview").await;
    for (page, write) in [
        ("certificates", "#new-certificate"),
        ("issuers", "#new-instance"),
        ("jobs", "#jobs-table button"),
        ("agents", "#agents-table button"),
    ] {
        b.goto(&format!("{url}/#/{page}")).await;
        b.ready(page).await;
        assert_eq!(b.count(write).await, 0, "a viewer sees no {write} on {page}");
        let overflow = b
            .js(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
                json!([]),
            )
            .await;
        assert_eq!(overflow, false, "{page} fits a 375 px screen");
    }
    b.goto(&format!("{url}/#/certificates/{cert_id}")).await;
    b.ready("certificate").await;
    for action in ["#action-renew", "#action-revoke"] {
        assert_eq!(b.count(action).await, 0, "a viewer sees no {action}");
    }
    assert!(b.find("#action-download").await.is_some(), "reading is allowed");
    screenshot(&b, "202-narrow-certificate-viewer").await;
    let problems = console_problems(&b).await;
    assert!(problems.is_empty(), "console: {problems:?}");
}
