//! API behaviour through the router (no socket): the auth matrix for every route, bad input,
//! filters, audit and metrics.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use certctl::auth::{Permission, Role};
use certctl::model::{InstanceKind, JobKind, Timestamp};
use certctl::store::jobs::NewJob;
use certctl::store::{AuditEntry, NewVersion};
use serde_json::{Value, json};

use crate::common::{Backend, KEYS, MAX_BODY, TestApp, key_of};

/// Every route: method, path (`{cert}`, `{issuer}`, `{key}` are replaced by fresh objects),
/// a valid body, and the permission it needs (`None`: public).
fn routes() -> Vec<(&'static str, &'static str, Option<Value>, Option<Permission>)> {
    use Permission::*;
    vec![
        ("GET", "/health", None, None),
        ("GET", "/ready", None, None),
        ("GET", "/api/v1/version", None, None),
        ("GET", "/api/v1/overview", None, Some(CertificatesRead)),
        ("GET", "/api/v1/openapi.json", None, None),
        ("GET", "/api/v1/metrics/prometheus", None, Some(MetricsRead)),
        ("GET", "/api/v1/certificates", None, Some(CertificatesRead)),
        (
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "NAME", "common_name": "a.example.test"})),
            Some(CertificatesWrite),
        ),
        ("GET", "/api/v1/certificates/{cert}", None, Some(CertificatesRead)),
        (
            "PATCH",
            "/api/v1/certificates/{cert}",
            Some(json!({"labels": {"env": "prod"}})),
            Some(CertificatesWrite),
        ),
        ("DELETE", "/api/v1/certificates/{cert}", None, Some(CertificatesWrite)),
        ("GET", "/api/v1/issuers", None, Some(IssuersRead)),
        (
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": "NAME", "plugin": "local-ca"})),
            Some(IssuersWrite),
        ),
        ("GET", "/api/v1/issuers/{issuer}", None, Some(IssuersRead)),
        (
            "PATCH",
            "/api/v1/issuers/{issuer}",
            Some(json!({"config": {"validity_days": 30}})),
            Some(IssuersWrite),
        ),
        ("DELETE", "/api/v1/issuers/{issuer}", None, Some(IssuersWrite)),
        ("GET", "/api/v1/api-keys", None, Some(KeysManage)),
        (
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "NAME", "role": "viewer"})),
            Some(KeysManage),
        ),
        ("DELETE", "/api/v1/api-keys/{key}", None, Some(KeysManage)),
        ("GET", "/api/v1/audit", None, Some(AuditRead)),
        ("GET", "/api/v1/plugins", None, Some(PluginsRead)),
        ("GET", "/api/v1/dns-solvers", None, Some(PluginsRead)),
        (
            "POST",
            "/api/v1/dns-solvers",
            Some(json!({"name": "NAME", "plugin": "httpreq"})),
            Some(PluginsWrite),
        ),
        ("GET", "/api/v1/dns-solvers/{dns}", None, Some(PluginsRead)),
        (
            "PATCH",
            "/api/v1/dns-solvers/{dns}",
            Some(json!({"name": "NAME"})),
            Some(PluginsWrite),
        ),
        ("DELETE", "/api/v1/dns-solvers/{dns}", None, Some(PluginsWrite)),
        (
            "POST",
            "/api/v1/dns-solvers/{dns}/test",
            Some(json!({"zone": "example.test"})),
            Some(PluginsWrite),
        ),
        ("GET", "/api/v1/notifiers", None, Some(PluginsRead)),
        (
            "POST",
            "/api/v1/notifiers",
            Some(json!({"name": "NAME", "plugin": "webhook"})),
            Some(PluginsWrite),
        ),
        ("GET", "/api/v1/notifiers/{notifier}", None, Some(PluginsRead)),
        (
            "PATCH",
            "/api/v1/notifiers/{notifier}",
            Some(json!({"name": "NAME"})),
            Some(PluginsWrite),
        ),
        ("DELETE", "/api/v1/notifiers/{notifier}", None, Some(PluginsWrite)),
        ("POST", "/api/v1/notifiers/{notifier}/test", None, Some(PluginsWrite)),
        ("GET", "/api/v1/jobs", None, Some(JobsRead)),
        ("GET", "/api/v1/jobs/{job}", None, Some(JobsRead)),
        ("POST", "/api/v1/jobs/{job}/cancel", None, Some(JobsWrite)),
        ("POST", "/api/v1/jobs/{cancelled_job}/retry", None, Some(JobsWrite)),
        ("POST", "/api/v1/jobs/{approval_job}/approve", None, Some(JobsWrite)),
        (
            "POST",
            "/api/v1/certificates/{cert}/csr",
            Some(json!({"csr": "not a CSR"})),
            Some(CertificatesWrite),
        ),
        (
            "POST",
            "/api/v1/certificates/{cert}/renew",
            None,
            Some(CertificatesWrite),
        ),
        (
            "POST",
            "/api/v1/certificates/{cert}/revoke",
            Some(json!({"reason": "superseded"})),
            Some(CertificatesWrite),
        ),
        (
            "GET",
            "/api/v1/certificates/{cert}/versions",
            None,
            Some(CertificatesRead),
        ),
        (
            "GET",
            "/api/v1/certificates/{cert}/download",
            None,
            Some(CertificatesRead),
        ),
        (
            "GET",
            "/api/v1/certificates/{cert}/private-key",
            None,
            Some(PrivateKeys),
        ),
        (
            "POST",
            "/api/v1/issuers/{issuer}/keys",
            Some(json!({"private_key_pem": rcgen::KeyPair::generate().expect("key").serialize_pem()})),
            Some(PrivateKeys),
        ),
        ("GET", "/api/v1/notification-routes", None, Some(PluginsRead)),
        (
            "POST",
            "/api/v1/notification-routes",
            Some(json!({"name": "NAME", "notifier_id": "NOTIFIER", "events": ["expiring"]})),
            Some(PluginsWrite),
        ),
        ("GET", "/api/v1/notification-routes/{route}", None, Some(PluginsRead)),
        (
            "PUT",
            "/api/v1/notification-routes/{route}",
            Some(json!({"name": "NAME", "notifier_id": "NOTIFIER"})),
            Some(PluginsWrite),
        ),
        (
            "DELETE",
            "/api/v1/notification-routes/{route}",
            None,
            Some(PluginsWrite),
        ),
        ("GET", "/api/v1/notifications", None, Some(JobsRead)),
        ("GET", "/api/v1/agents", None, Some(CertificatesRead)),
        ("GET", "/api/v1/agents/{agent}", None, Some(CertificatesRead)),
        ("POST", "/api/v1/agents/{agent}/retire", None, Some(CertificatesWrite)),
        ("GET", "/api/v1/discoveries", None, Some(CertificatesRead)),
        (
            "POST",
            "/api/v1/discoveries/{discovery}/claim",
            Some(json!({"certificate_id": "none"})),
            Some(CertificatesWrite),
        ),
        (
            "POST",
            "/api/v1/discoveries/{discovery}/dismiss",
            None,
            Some(CertificatesWrite),
        ),
        ("GET", "/api/v1/dns-persist", None, Some(IssuersRead)),
        (
            "POST",
            "/api/v1/dns-persist/{persist}/approve",
            None,
            Some(IssuersWrite),
        ),
    ]
}

/// Routes whose success needs a loaded plugin, which this router has none of: for them a
/// permitted caller must get past authorization (not 401/403); the plugin tests cover success.
fn needs_loaded_plugin(method: &str, template: &str) -> bool {
    (method == "POST"
        && (template == "/api/v1/dns-solvers" || template == "/api/v1/notifiers" || template == "/api/v1/issuers"))
        || (method == "PATCH" && template == "/api/v1/issuers/{issuer}")
        || template.starts_with("/api/v1/dns-persist/")
        || template.starts_with("/api/v1/discoveries/")
        || template.ends_with("/test")
        || needs_issuance(template)
}

/// Routes that act on an issued certificate (or send it a CSR): the fixture certificate has no
/// issuer, so a permitted caller gets a 4xx past authorization; tests/all/lifecycle.rs covers
/// success.
fn needs_issuance(template: &str) -> bool {
    ["/csr", "/renew", "/revoke", "/download", "/private-key"]
        .iter()
        .any(|suffix| template.starts_with("/api/v1/certificates/") && template.ends_with(suffix))
}

/// Replaces placeholders with ids of freshly created objects and `NAME` with a unique name.
async fn materialise(app: &TestApp, path: &str, body: &Option<Value>, n: usize) -> (String, Option<Value>) {
    let mut path = path.to_string();
    if path.contains("{cert}") {
        path = path.replace(
            "{cert}",
            &app.certificate(&format!("fixture-{n}"), "fixture.example.test").await,
        );
    }
    // No dns-persist record or discovery exists here: a permitted caller gets past
    // authorization to a 404.
    path = path.replace("{persist}", "1").replace("{discovery}", "none");
    if path.contains("{agent}") {
        let credential = certctl::auth::ApiKeyHash::of(&certctl::auth::generate_agent_credential());
        let (agent, _) = app
            .store
            .register_agent(
                &format!("fixture-{n}"),
                &certctl::store::agents::AgentInfo::default(),
                &credential,
                AuditEntry::new("tester", "fixture", "agent", ""),
            )
            .await
            .expect("fixture agent");
        path = path.replace("{agent}", &agent.id);
    }
    if path.contains("{issuer}") {
        path = path.replace("{issuer}", &app.issuer(&format!("fixture-{n}")).await);
    }
    for (placeholder, kind) in [
        ("{dns}", InstanceKind::DnsSolver),
        ("{notifier}", InstanceKind::Notifier),
    ] {
        if path.contains(placeholder) {
            let instance = app
                .store
                .create_instance(
                    kind,
                    &format!("fixture-{n}"),
                    "not-loaded",
                    &json!({}),
                    AuditEntry::new("tester", "fixture", kind.as_str(), ""),
                )
                .await
                .expect("fixture instance");
            path = path.replace(placeholder, &instance.id);
        }
    }
    for (placeholder, cancelled) in [("{job}", false), ("{cancelled_job}", true), ("{approval_job}", false)] {
        if path.contains(placeholder) {
            let state = if placeholder == "{approval_job}" {
                certctl::model::JobState::AwaitingApproval
            } else {
                certctl::model::JobState::Pending
            };
            let job = app
                .store
                .enqueue_job(&NewJob {
                    state,
                    ..NewJob::now(JobKind::Issuance, None, json!({}), 3)
                })
                .await
                .expect("fixture job")
                .expect("not a duplicate");
            if cancelled {
                app.store
                    .cancel_job(&job.id, AuditEntry::new("tester", "fixture", "job", &job.id))
                    .await
                    .expect("cancel");
            }
            path = path.replace(placeholder, &job.id);
        }
    }
    let needs_notifier = body.as_ref().is_some_and(|b| b.to_string().contains("NOTIFIER"));
    let mut notifier_id = String::new();
    if path.contains("{route}") || needs_notifier {
        notifier_id = app
            .store
            .create_instance(
                InstanceKind::Notifier,
                &format!("route-fixture-{n}"),
                "not-loaded",
                &json!({}),
                AuditEntry::new("tester", "fixture", "notifier", ""),
            )
            .await
            .expect("fixture notifier")
            .id;
    }
    if path.contains("{route}") {
        let spec = certctl::store::lifecycle::RouteSpec {
            name: format!("route-{n}"),
            notifier_id: notifier_id.clone(),
            events: Vec::new(),
            min_severity: certctl::model::Severity::Info,
        };
        let route = app
            .store
            .create_route(&spec, AuditEntry::new("tester", "fixture", "notification_route", ""))
            .await
            .expect("fixture route");
        path = path.replace("{route}", &route.id);
    }
    if path.contains("{key}") {
        let (status, body) = app
            .admin(
                "POST",
                "/api/v1/api-keys",
                Some(json!({"name": format!("fixture-{n}"), "role": "viewer"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        path = path.replace("{key}", body["id"].as_str().expect("id"));
    }
    let body = body.as_ref().map(|b| {
        let text = b
            .to_string()
            .replace("NAME", &format!("made-{n}"))
            .replace("NOTIFIER", &notifier_id);
        serde_json::from_str(&text).expect("json")
    });
    (path, body)
}

async fn auth_matrix_covers_every_route(backend: Backend) {
    let app = TestApp::new(backend).await;
    let mut n = 0;
    for (method, template, body, permission) in routes() {
        // No key, and an unknown key.
        for key in [None, Some("cck_not-a-real-key-at-all")] {
            n += 1;
            let (path, body) = materialise(&app, template, &body, n).await;
            let (status, resp) = app.call(method, &path, key, body).await;
            if permission.is_some() {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {template} key={key:?}: {resp}"
                );
                assert_eq!(resp["error"]["code"], "unauthorized");
            } else {
                assert!(status.is_success(), "{method} {template} is public: {status} {resp}");
            }
        }
        for (_, key, role) in KEYS {
            n += 1;
            let (path, body) = materialise(&app, template, &body, n).await;
            let (status, resp) = app.call(method, &path, Some(key), body).await;
            let allowed = permission.is_none_or(|p| role.allows(p));
            if allowed && needs_loaded_plugin(method, template) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {template} as {role:?}: {status} {resp}"
                );
            } else if allowed {
                assert!(status.is_success(), "{method} {template} as {role:?}: {status} {resp}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {template} as {role:?}: {resp}");
                let msg = resp["error"]["message"].as_str().expect("message");
                assert!(msg.contains(permission.expect("restricted").as_str()), "{msg}");
            }
        }
    }
}

async fn every_documented_route_is_in_the_matrix(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (status, doc) = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let placeholder = |p: &str| {
        [
            "{cert}",
            "{issuer}",
            "{key}",
            "{dns}",
            "{notifier}",
            "{job}",
            "{cancelled_job}",
            "{approval_job}",
            "{route}",
            "{persist}",
            "{agent}",
            "{discovery}",
        ]
        .iter()
        .fold(p.to_string(), |acc, ph| acc.replace(ph, "{id}"))
    };
    // Routes an agent calls with its own credential (or the bootstrap token) are not
    // role-based; tests/all/agents.rs covers who may call them.
    let agent_self = [
        ("POST", "/api/v1/agents"),
        ("POST", "/api/v1/agents/{id}/heartbeat"),
        ("GET", "/api/v1/agents/{id}/work"),
        ("POST", "/api/v1/agents/{id}/certificates/{cert}/csr"),
        ("POST", "/api/v1/agents/{id}/jobs/{job}/result"),
        ("POST", "/api/v1/agents/{id}/discoveries"),
        // Any valid key may ask who it is; tests/all/dashboard.rs covers it (401 without one).
        ("GET", "/api/v1/whoami"),
    ];
    for (m, p) in agent_self {
        assert!(
            documented.remove(&(m.to_string(), p.to_string())),
            "{m} {p} is documented"
        );
    }
    let tested: BTreeSet<(String, String)> = routes()
        .iter()
        .filter(|(_, p, _, _)| *p != "/api/v1/openapi.json")
        .map(|(m, p, _, _)| (m.to_string(), placeholder(p)))
        .collect();
    assert_eq!(documented, tested, "OpenAPI document and auth matrix disagree");
}

async fn bad_bodies_get_clear_errors(backend: Backend) {
    let app = TestApp::new(backend).await;
    let key = Some(key_of(Role::Operator));
    let send_raw = |body: &'static str, content_type: &'static str| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/certificates")
            .header("authorization", format!("Bearer {}", key_of(Role::Operator)))
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request")
    };

    let (status, body) = app.send(send_raw("{\"name\": ", "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().expect("msg").contains("invalid JSON"),
        "{body}"
    );

    let (status, body) = app
        .send(send_raw("name=web", "application/x-www-form-urlencoded"))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"name": "w", "common_name": "a.test", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (json!({"common_name": "a.test"}), StatusCode::BAD_REQUEST, "name"),
        (
            json!({"name": 5, "common_name": "a.test"}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "key_type": "rsa-1024"}),
            StatusCode::BAD_REQUEST,
            "key_type",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "renewal": {"renew_before": 3}}),
            StatusCode::BAD_REQUEST,
            "renewal.renew_before",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "sans": ["ok.test", "bad name"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sans.1",
        ),
        (
            json!({"name": "has space", "common_name": "a.test"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "issuer_id": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "issuer_id",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "renewal": {"renew_before_days": 0}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "renewal.renew_before_days",
        ),
        (
            json!({"name": "w", "common_name": "a.test", "labels": {"bad key": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "labels.bad key",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, resp) = app.call("POST", "/api/v1/certificates", key, Some(body.clone())).await;
        assert_eq!(status, expected, "{body} -> {resp}");
        assert_eq!(resp["error"]["field"], field, "{body} -> {resp}");
        assert!(!resp["error"]["message"].as_str().expect("message").is_empty());
    }

    let (status, resp) = app
        .call(
            "POST",
            "/api/v1/issuers",
            key,
            Some(json!({"name": "x", "plugin": "local-ca", "config": [1]})),
        )
        .await;
    assert_eq!(
        (status, resp["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("config"))
    );

    let big = json!({"name": "w", "common_name": "a.test", "labels": {"k": "v".repeat(MAX_BODY)}});
    let (status, resp) = app.call("POST", "/api/v1/certificates", key, Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert_eq!(resp["error"]["code"], "payload_too_large");
}

async fn bad_query_parameters_are_named(backend: Backend) {
    let app = TestApp::new(backend).await;
    let key = Some(key_of(Role::Viewer));
    for (query, field) in [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, resp) = app
            .call("GET", &format!("/api/v1/certificates?{query}"), key, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {resp}");
        assert_eq!(resp["error"]["field"], field, "{query}: {resp}");
    }
    let (status, resp) = app.call("GET", "/api/v1/audit?cursor=abc", key, None).await;
    assert_eq!(
        (status, resp["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cursor"))
    );
    let (status, resp) = app.call("GET", "/api/v1/nothing-here", key, None).await;
    assert_eq!(
        (status, resp["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

async fn conflicts_and_missing_objects(backend: Backend) {
    let app = TestApp::new(backend).await;
    app.certificate("web", "web.example.test").await;
    let (status, resp) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "web", "common_name": "x.test"})),
        )
        .await;
    assert_eq!(
        (status, resp["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );

    let issuer = app.issuer("ca").await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "api", "common_name": "api.test", "issuer_id": issuer})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let (status, resp) = app.admin("DELETE", &format!("/api/v1/issuers/{issuer}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("1 certificate"),
        "{resp}"
    );

    for path in ["/api/v1/certificates/nope", "/api/v1/issuers/nope"] {
        let (status, _) = app.admin("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let (status, _) = app.admin("DELETE", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = app
        .admin("PATCH", "/api/v1/certificates/nope", Some(json!({"labels": {}})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn declared_names_are_normalised(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "shop", "common_name": "Shop.Example.TEST.", "sans": ["www.example.test", "shop.example.test", "10.0.0.1"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    assert_eq!(cert["common_name"], "shop.example.test");
    assert_eq!(
        cert["sans"],
        json!(["shop.example.test", "www.example.test", "10.0.0.1"])
    );
    assert_eq!(cert["key_type"], "ecdsa-p256");
    assert_eq!(cert["key_generation"], "agent");
    assert_eq!(cert["status"], "pending");

    let id = cert["id"].as_str().expect("id");
    let (status, updated) = app
        .admin(
            "PATCH",
            &format!("/api/v1/certificates/{id}"),
            Some(json!({"common_name": "new.example.test"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["sans"][0], "new.example.test");
    assert!(
        updated["sans"]
            .as_array()
            .expect("sans")
            .contains(&json!("www.example.test"))
    );
}

async fn list_filters_and_pages(backend: Backend) {
    let app = TestApp::new(backend).await;
    let issuer = app.issuer("ca").await;
    for i in 0..5 {
        let (status, _) = app
            .admin(
                "POST",
                "/api/v1/certificates",
                Some(json!({"name": format!("svc-{i}"), "common_name": format!("svc{i}.example.test"), "issuer_id": issuer})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    app.certificate("other", "other.example.test").await;
    let key = Some(key_of(Role::Viewer));
    let (_, page) = app
        .call(
            "GET",
            &format!("/api/v1/certificates?issuer_id={issuer}&limit=2"),
            key,
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    let cursor = page["next_cursor"].as_str().expect("more pages");
    let (_, page2) = app
        .call(
            "GET",
            &format!("/api/v1/certificates?issuer_id={issuer}&limit=2&cursor={cursor}"),
            key,
            None,
        )
        .await;
    assert_eq!(page2["items"].as_array().expect("items").len(), 2);
    assert_ne!(page["items"][0]["id"], page2["items"][0]["id"]);
    let (_, found) = app.call("GET", "/api/v1/certificates?q=OTHER", key, None).await;
    assert_eq!(found["items"].as_array().expect("items").len(), 1);
    assert_eq!(found["items"][0]["name"], "other");
    let (_, pending) = app
        .call("GET", "/api/v1/certificates?status=pending&limit=500", key, None)
        .await;
    assert_eq!(pending["items"].as_array().expect("items").len(), 6);
}

async fn mutations_are_audited_with_the_actor(backend: Backend) {
    let app = TestApp::new(backend).await;
    let op = Some(key_of(Role::Operator));
    let (_, cert) = app
        .call(
            "POST",
            "/api/v1/certificates",
            op,
            Some(json!({"name": "web", "common_name": "web.test"})),
        )
        .await;
    let id = cert["id"].as_str().expect("id").to_string();
    app.call(
        "PATCH",
        &format!("/api/v1/certificates/{id}"),
        op,
        Some(json!({"labels": {"a": "b"}})),
    )
    .await;
    app.call("DELETE", &format!("/api/v1/certificates/{id}"), op, None)
        .await;
    // A refused call changes nothing and is not audited.
    app.call("DELETE", &format!("/api/v1/certificates/{id}"), op, None)
        .await;
    let (status, audit) = app
        .call(
            "GET",
            &format!("/api/v1/audit?target_id={id}"),
            Some(key_of(Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        vec!["certificate.delete", "certificate.update", "certificate.create"]
    );
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["actor"] == "operator-key")
    );
}

async fn created_api_keys_work_and_are_shown_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (status, created) = app
        .admin(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "grafana", "role": "metrics"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key shown on creation").to_string();
    let (status, _) = app.call("GET", "/api/v1/metrics/prometheus", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call("GET", "/api/v1/certificates", Some(&key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = app.admin("GET", "/api/v1/api-keys", None).await;
    assert!(!list.to_string().contains(&key), "listing never shows keys");
    let (status, resp) = app
        .admin(
            "POST",
            "/api/v1/api-keys",
            Some(json!({"name": "admin-key", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "name taken by an environment key: {resp}");
    let id = created["id"].as_str().expect("id");
    let (status, _) = app.admin("DELETE", &format!("/api/v1/api-keys/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call("GET", "/api/v1/metrics/prometheus", Some(&key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a deleted key stops working at once");
}

/// `promtool check metrics` on the real exposition, with every series populated.
async fn metrics_reflect_the_fleet_and_pass_promtool(backend: Backend) {
    let app = TestApp::new(backend).await;
    let id = app.certificate("web", "web.example.test").await;
    app.certificate("pending", "pending.example.test").await;
    let now = Timestamp::now();
    app.store
        .add_version(
            &id,
            &NewVersion {
                serial: "0a".into(),
                fingerprint_sha256: "11".repeat(32),
                not_before: now.plus_days(-80),
                not_after: now.plus_days(5),
                chain_pem: String::new(),
                issuer_id: None,
                key_id: None,
            },
            &Default::default(),
            AuditEntry::new("tester", "certificate.issue", "certificate", &id),
        )
        .await
        .expect("version");
    app.call("GET", "/api/v1/certificates", None, None).await; // an auth failure, counted
    let (status, text) = app
        .call("GET", "/api/v1/metrics/prometheus", Some(key_of(Role::Metrics)), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("text body").to_string();
    for line in [
        "certctl_certificate_total 2",
        "certctl_certificate_expiring_soon 1",
        "certctl_certificate_expired 0",
        "certctl_certificate_revoked 0",
        "certctl_agent_total 0",
        "certctl_agent_online 0",
        "certctl_job_pending 0",
        "certctl_job_completed_total 0",
        "certctl_job_failed_total 0",
        "certctl_auth_failures_total{reason=\"missing_key\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("certctl_http_requests_total{method=\"POST\",route=\"/api/v1/certificates\",status=\"201\"} 2"),
        "{text}"
    );

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test.sh (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn jobs_can_be_listed_cancelled_and_retried(backend: Backend) {
    let app = TestApp::new(backend).await;
    let cert = app.certificate("web", "web.example.test").await;
    let new = |kind| NewJob::now(kind, Some(&cert), json!({}), 3);
    let issuance = app
        .store
        .enqueue_job(&new(JobKind::Issuance))
        .await
        .expect("job")
        .expect("not a duplicate");
    app.store.enqueue_job(&new(JobKind::Deployment)).await.expect("job");
    let viewer = Some(key_of(Role::Viewer));
    let (status, page) = app
        .call(
            "GET",
            &format!("/api/v1/jobs?type=issuance&certificate_id={cert}"),
            viewer,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert_eq!(page["items"][0]["state"], "pending");
    let (status, resp) = app.call("GET", "/api/v1/jobs?status=sleeping", viewer, None).await;
    assert_eq!(
        (status, resp["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("status"))
    );

    let op = Some(key_of(Role::Operator));
    let (status, resp) = app
        .call("POST", &format!("/api/v1/jobs/{}/retry", issuance.id), op, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a pending job cannot be retried: {resp}");
    let (status, job) = app
        .call("POST", &format!("/api/v1/jobs/{}/cancel", issuance.id), op, None)
        .await;
    assert_eq!((status, job["state"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (status, _) = app
        .call("POST", &format!("/api/v1/jobs/{}/cancel", issuance.id), op, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "cancelling twice");
    let (status, job) = app
        .call("POST", &format!("/api/v1/jobs/{}/retry", issuance.id), op, None)
        .await;
    assert_eq!(
        (status, job["state"].as_str(), job["attempts"].as_i64()),
        (StatusCode::OK, Some("pending"), Some(0))
    );
    let (_, audit) = app
        .call("GET", &format!("/api/v1/audit?target_id={}", issuance.id), viewer, None)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, vec!["job.retry", "job.cancel"]);
}

crate::on_both_backends!(
    jobs_can_be_listed_cancelled_and_retried,
    auth_matrix_covers_every_route,
    every_documented_route_is_in_the_matrix,
    bad_bodies_get_clear_errors,
    bad_query_parameters_are_named,
    conflicts_and_missing_objects,
    declared_names_are_normalised,
    list_filters_and_pages,
    mutations_are_audited_with_the_actor,
    created_api_keys_work_and_are_shown_once,
    metrics_reflect_the_fleet_and_pass_promtool,
);
