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
