//! The lifecycle end to end through the REST API, with the real local CA plugin and openssl:
//! issuance from a CSR, refusals, server-side keys, renewal by the scheduler, revocation and
//! the CRL, notification routing with retries, dedupe and dead letters.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use certctl::auth::Role;
use certctl::lifecycle::scheduler;
use certctl::plugins::grants::Grants;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, key_of};
use crate::sandbox::shipped_dir;

const DAY: i64 = 86_400;

async fn app(backend: Backend, grants: &str) -> TestApp {
    TestApp::with_plugins(backend, vec![shipped_dir()], Grants::parse(grants).expect("grants")).await
}

async fn issuer(app: &TestApp, name: &str, config: Value) -> String {
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": name, "plugin": "local-ca", "config": config})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_string()
}

pub(crate) async fn declare(app: &TestApp, body: Value) -> Value {
    let (status, cert) = app.admin("POST", "/api/v1/certificates", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    cert
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key and CSR made by openssl, as an agent or an operator would.
fn openssl_csr(dir: &Path, key_args: &[&str], cn: &str, sans: &str) -> String {
    let key = dir.join(format!("{cn}.key"));
    let csr = dir.join(format!("{cn}.csr"));
    run(Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey"])
        .args(key_args)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName={sans}"),
        ]));
    std::fs::read_to_string(&csr).expect("csr")
}

async fn download(app: &TestApp, id: &str, part: &str) -> String {
    let (status, body) = app
        .call(
            "GET",
            &format!("/api/v1/certificates/{id}/download?part={part}"),
            Some(key_of(Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_str().expect("PEM text").to_string()
}

pub(crate) async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.admin("GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

pub(crate) async fn run_jobs(app: &TestApp) -> usize {
    app.lifecycle.run_due_jobs().await.expect("job runner")
}

async fn issuance_through_the_api_verifies_with_openssl(backend: Backend) {
    let app = app(backend, "").await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = issuer(&app, "internal", json!({"ca_common_name": "certctl test CA"})).await;
    let cert = declare(
        &app,
        json!({"name": "web", "common_name": "web.example.test", "sans": ["www.example.test", "192.0.2.7"],
               "issuer_id": ca}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    // Declared with an issuer and an agent key: the issuance waits for the CSR.
    let jobs = get(&app, &format!("/api/v1/jobs?certificate_id={id}")).await;
    assert_eq!(jobs["items"][0]["state"], "awaiting_csr", "{jobs}");

    let csr = openssl_csr(
        dir.path(),
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "web.example.test",
        "DNS:web.example.test,DNS:www.example.test,IP:192.0.2.7",
    );
    let (status, job) = app
        .call(
            "POST",
            &format!("/api/v1/certificates/{id}/csr"),
            Some(key_of(Role::Operator)),
            Some(json!({"csr": csr})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "pending", "answered before issuing: {job}");
    assert_eq!(run_jobs(&app).await, 1);

    let job = get(&app, &format!("/api/v1/jobs/{}", job["id"].as_str().expect("job id"))).await;
    assert_eq!(job["state"], "completed", "{job}");
    let steps: Vec<&str> = job["payload"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(steps, vec!["csr", "order", "issued"], "{job}");
    let cert = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert_eq!(cert["status"], "active", "{cert}");
    assert!(cert["renew_at"].is_string(), "{cert}");

    let leaf = dir.path().join("leaf.pem");
    let chain = dir.path().join("chain.pem");
    std::fs::write(&leaf, download(&app, id, "cert").await).expect("write");
    std::fs::write(&chain, download(&app, id, "chain").await).expect("write");
    let fullchain = download(&app, id, "fullchain").await;
    assert_eq!(fullchain.matches("BEGIN CERTIFICATE").count(), 2);
    let verified = run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&chain)
        .arg(&leaf));
    assert!(verified.contains(": OK"), "{verified}");
    let text = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&leaf));
    for expected in [
        "DNS:web.example.test",
        "DNS:www.example.test",
        "IP Address:192.0.2.7",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        text.contains("Subject: CN = web.example.test") || text.contains("Subject: CN=web.example.test"),
        "{text}"
    );
    // The certificate carries the key of the CSR: the private key never left "the agent".
    let from_key = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(dir.path().join("web.example.test.key")));
    let from_cert = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&leaf));
    assert_eq!(from_key, from_cert);
    let serial = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&leaf));
    let versions = get(&app, &format!("/api/v1/certificates/{id}/versions")).await;
    assert_eq!(versions.as_array().expect("list").len(), 1);
    assert_eq!(
        serial.trim(),
        format!("serial={}", versions[0]["serial"].as_str().expect("serial"))
    );
    assert_eq!(versions[0]["server_key"], false);
    let (status, body) = app
        .admin("GET", &format!("/api/v1/certificates/{id}/private-key"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an agent's key is not on the server: {body}"
    );
    let audit = get(&app, &format!("/api/v1/audit?target_id={id}")).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["certificate.create", "certificate.csr", "certificate.issued"] {
        assert!(actions.contains(&action), "{action} not audited: {actions:?}");
    }
}

async fn bad_requests_are_refused_and_nothing_is_written(backend: Backend) {
    let app = app(backend, "").await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = issuer(&app, "strict", json!({"allowed_names": ["*.example.test"]})).await;
    let cert = declare(
        &app,
        json!({"name": "api", "common_name": "api.example.test", "issuer_id": ca}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    let post_csr = |csr: String| {
        let app = &app;
        async move {
            app.admin(
                "POST",
                &format!("/api/v1/certificates/{id}/csr"),
                Some(json!({"csr": csr})),
            )
            .await
        }
    };

    let (status, body) = post_csr("garbage".into()).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("csr"))
    );

    // Altered after signing: one byte of the name changed.
    let good = openssl_csr(
        dir.path(),
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "api.example.test",
        "DNS:api.example.test",
    );
    let der = run(Command::new("openssl")
        .args(["req", "-outform", "DER", "-in"])
        .arg(dir.path().join("api.example.test.csr"))
        .arg("-out")
        .arg(dir.path().join("api.der")));
    assert!(der.is_empty());
    let mut bytes = std::fs::read(dir.path().join("api.der")).expect("der");
    let pos = bytes
        .windows(16)
        .position(|w| w == b"api.example.test")
        .expect("name in CSR");
    bytes[pos] = b'x';
    use base64::Engine;
    let (status, body) = post_csr(base64::engine::general_purpose::STANDARD.encode(&bytes)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not verify"),
        "{body}"
    );

    // Wrong key type: RSA for an ECDSA P-256 certificate.
    let rsa = openssl_csr(dir.path(), &["rsa:2048"], "api.example.test", "DNS:api.example.test");
    let (status, body) = post_csr(rsa).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or("").contains("rsa-2048"),
        "{body}"
    );

    // Names other than the declared ones.
    let other = openssl_csr(
        dir.path(),
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "api.example.test",
        "DNS:api.example.test,DNS:evil.example.test",
    );
    let (status, body) = post_csr(other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("evil.example.test"),
        "{body}"
    );

    // Names the issuer's policy forbids: refused at once by the plugin's check.
    let forbidden = declare(
        &app,
        json!({"name": "outside", "common_name": "www.elsewhere.test", "issuer_id": ca}),
    )
    .await;
    let forbidden_id = forbidden["id"].as_str().expect("id");
    let csr = openssl_csr(
        dir.path(),
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "www.elsewhere.test",
        "DNS:www.elsewhere.test",
    );
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/certificates/{forbidden_id}/csr"),
            Some(json!({"csr": csr})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("strict") && message.contains("www.elsewhere.test"),
        "{body}"
    );

    // An unknown issuer.
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "orphan", "common_name": "o.example.test", "issuer_id": "no-such-issuer"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("issuer_id"))
    );

    // Nothing was written: no versions, the jobs still wait for a good CSR, no CA was made.
    assert_eq!(run_jobs(&app).await, 0);
    for cert in [id, forbidden_id] {
        let versions = get(&app, &format!("/api/v1/certificates/{cert}/versions")).await;
        assert_eq!(versions, json!([]));
        let jobs = get(&app, &format!("/api/v1/jobs?certificate_id={cert}")).await;
        assert_eq!(jobs["items"][0]["state"], "awaiting_csr", "{jobs}");
    }
    assert!(
        app.store.kv_is_empty(&ca).await.expect("kv"),
        "a refused request creates no CA"
    );

    // And the good CSR still goes through.
    let (status, body) = post_csr(good).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    run_jobs(&app).await;
    assert_eq!(
        get(&app, &format!("/api/v1/certificates/{id}")).await["status"],
        "active"
    );
}

async fn server_keys_renew_by_themselves_when_due(backend: Backend) {
    let app = app(backend, "").await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = issuer(&app, "internal", json!({"default_validity_days": 30})).await;
    let cert = declare(
        &app,
        json!({"name": "agentless", "common_name": "agentless.example.test", "key_generation": "server",
               "key_type": "ecdsa-p384", "issuer_id": ca}),
    )
    .await;
    let manual = declare(
        &app,
        json!({"name": "manual", "common_name": "manual.example.test", "key_generation": "server",
               "issuer_id": ca, "renewal": {"auto_renew": false}}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    assert_eq!(run_jobs(&app).await, 2, "server keys issue at once");
    let first = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert_eq!(
        first["status"], "expiring",
        "30 days left is inside the expiring window: {first}"
    );

    // Nothing is due yet.
    assert_eq!(scheduler::renewal_scan(&app.lifecycle).await.expect("scan"), 0);
    // 30-day certificates renew in their last third: after day 20.
    app.lifecycle.clock.advance(21 * DAY);
    assert_eq!(
        scheduler::renewal_scan(&app.lifecycle).await.expect("scan"),
        1,
        "only the auto-renewing certificate is due"
    );
    assert_eq!(
        scheduler::renewal_scan(&app.lifecycle).await.expect("scan"),
        0,
        "no duplicate renewal"
    );
    assert_eq!(run_jobs(&app).await, 1);
    let versions = get(&app, &format!("/api/v1/certificates/{id}/versions")).await;
    let versions = versions.as_array().expect("list");
    assert_eq!(versions.len(), 2, "renewed");
    assert_ne!(versions[0]["serial"], versions[1]["serial"]);
    assert_eq!(versions[0]["server_key"], true);
    let renewed = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert_eq!(renewed["current_version_id"], versions[0]["id"]);
    assert!(
        renewed["renew_at"].is_string(),
        "the new version has a renewal date: {renewed}"
    );
    let manual_versions = get(
        &app,
        &format!("/api/v1/certificates/{}/versions", manual["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(
        manual_versions.as_array().expect("list").len(),
        1,
        "auto_renew off is honoured"
    );

    // The private key: admins only, and it is the certificate's key.
    for role in [Role::Operator, Role::Viewer] {
        let (status, _) = app
            .call(
                "GET",
                &format!("/api/v1/certificates/{id}/private-key"),
                Some(key_of(role)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}");
    }
    let (status, key) = app
        .admin("GET", &format!("/api/v1/certificates/{id}/private-key"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    let key_path = dir.path().join("key.pem");
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&key_path, key.as_str().expect("PEM")).expect("write");
    std::fs::write(&leaf_path, download(&app, id, "cert").await).expect("write");
    let from_key = run(Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&key_path));
    let from_cert = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&leaf_path));
    assert_eq!(from_key, from_cert);
    assert!(
        run(Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&leaf_path))
        .contains("P-384"),
        "the declared key type"
    );
    let audit = get(
        &app,
        &format!("/api/v1/audit?action=certificate.private_key_download&target_id={id}"),
    )
    .await;
    assert_eq!(audit["items"].as_array().expect("items").len(), 1, "{audit}");
}

async fn revocation_is_listed_on_the_served_crl(backend: Backend) {
    let app = app(backend, "").await;
    let dir = tempfile::tempdir().expect("tmp");
    let ca = issuer(&app, "internal", json!({})).await;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let cert = declare(
            &app,
            json!({"name": name, "common_name": format!("{name}.example.test"), "key_generation": "server",
                   "issuer_id": ca}),
        )
        .await;
        ids.push(cert["id"].as_str().expect("id").to_string());
    }
    run_jobs(&app).await;
    let (status, version) = app
        .call(
            "POST",
            &format!("/api/v1/certificates/{}/revoke", ids[0]),
            Some(key_of(Role::Operator)),
            Some(json!({"reason": "key_compromise"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["revocation_reason"], "key_compromise");
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/certificates/{}/revoke", ids[0]),
            Some(json!({"reason": "superseded"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "revoking twice: {body}");
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/certificates/{}/revoke", ids[1]),
            Some(json!({"reason": "because"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("reason")),
        "{body}"
    );
    assert_eq!(
        get(&app, &format!("/api/v1/certificates/{}", ids[0])).await["status"],
        "revoked"
    );

    // The CRL needs no key, is DER, verifies against the CA and lists the serial and reason.
    let (status, headers, bytes) = app.raw(&format!("/crl/{ca}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/pkix-crl");
    let crl_path = dir.path().join("ca.crl");
    std::fs::write(&crl_path, &bytes).expect("write");
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, download(&app, &ids[1], "chain").await).expect("write");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl_path)
        .arg("-CAfile")
        .arg(&chain)
        .output()
        .expect("openssl crl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("verify OK"), "{text}");
    assert!(text.contains(version["serial"].as_str().expect("serial")), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    let versions = get(&app, &format!("/api/v1/certificates/{}/versions", ids[1])).await;
    assert!(
        !text.contains(versions[0]["serial"].as_str().expect("serial")),
        "a valid certificate is not listed"
    );
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    // The revocation job tells the issuer; the local CA has nothing more to do.
    run_jobs(&app).await;
    let jobs = get(&app, &format!("/api/v1/jobs?type=revocation&certificate_id={}", ids[0])).await;
    assert_eq!(jobs["items"][0]["state"], "completed", "{jobs}");
    let (status, _) = app.call("GET", "/crl/no-such-issuer", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A local HTTP receiver answering with the queued statuses (then 200), recording requests.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

async fn receiver() -> Receiver {
    let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
    let statuses: Arc<Mutex<VecDeque<u16>>> = Arc::default();
    let (record, answers) = (seen.clone(), statuses.clone());
    let app = Router::new().route(
        "/{*path}",
        any(move |headers: HeaderMap, body: Bytes| {
            let (record, answers) = (record.clone(), answers.clone());
            async move {
                record.lock().expect("lock").push((headers, body));
                let code = answers.lock().expect("lock").pop_front().unwrap_or(200);
                StatusCode::from_u16(code).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { addr, seen, statuses }
}

async fn expiry_alerts_are_routed_deduplicated_retried_and_dead_lettered(backend: Backend) {
    let hook = receiver().await;
    let host = format!("http://127.0.0.1:{}", hook.addr.port());
    let app = app(
        backend,
        &format!("[webhook]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n"),
    )
    .await;
    let secret_dir = tempfile::tempdir().expect("tmp");
    let secret = secret_dir.path().join("hook-secret");
    std::fs::write(&secret, "s3cret\n").expect("write");
    let (status, notifier) = app
        .admin(
            "POST",
            "/api/v1/notifiers",
            Some(json!({"name": "ops-hook", "plugin": "webhook",
                        "config": {"url": format!("{host}/alerts"), "secret": format!("file:{}", secret.display())}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{notifier}");
    let (status, route) = app
        .call(
            "POST",
            "/api/v1/notification-routes",
            Some(key_of(Role::Operator)),
            Some(json!({"name": "expiry", "notifier_id": notifier["id"], "events": ["expiring", "renewed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    let ca = issuer(&app, "internal", json!({"default_validity_days": 60})).await;
    let cert = declare(
        &app,
        json!({"name": "web", "common_name": "web.example.test", "key_generation": "server", "issuer_id": ca,
               "renewal": {"auto_renew": false, "alert_days": [30, 7]}}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    run_jobs(&app).await;
    assert_eq!(
        scheduler::alert_scan(&app.lifecycle).await.expect("scan"),
        0,
        "60 days left: no threshold crossed"
    );
    assert!(hook.seen.lock().expect("lock").is_empty(), "issued is not on the route");

    // 29 days left: the 30-day alert, once, however often the scan runs.
    app.lifecycle.clock.advance(31 * DAY);
    scheduler::alert_scan(&app.lifecycle).await.expect("scan");
    scheduler::alert_scan(&app.lifecycle).await.expect("scan");
    assert_eq!(run_jobs(&app).await, 1, "one delivery");
    let seen = hook.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    let event: Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(event["kind"], "expiring");
    assert_eq!(event["subject"], "web");
    assert_eq!(event["detail"]["threshold_days"], "30");
    let ts = headers["x-certctl-timestamp"].to_str().expect("timestamp");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body);
    assert_eq!(
        headers["x-certctl-signature"],
        format!("sha256={}", hex::encode(ring::hmac::sign(&key, &signed).as_ref()))
    );

    // 6 days left: the 7-day alert. The receiver fails twice; the delivery retries with
    // backoff and then succeeds.
    app.lifecycle.clock.advance(23 * DAY);
    hook.statuses.lock().expect("lock").extend([503, 500]);
    scheduler::alert_scan(&app.lifecycle).await.expect("scan");
    run_jobs(&app).await;
    let pending = get(&app, "/api/v1/notifications?status=pending").await;
    assert_eq!(pending["items"][0]["state"], "retrying", "{pending}");
    assert_eq!(pending["items"][0]["threshold_days"], 7);
    assert!(
        pending["items"][0]["last_error"].as_str().unwrap_or("").contains("503"),
        "{pending}"
    );
    assert_eq!(run_jobs(&app).await, 0, "the retry waits for its backoff");
    for _ in 0..2 {
        app.lifecycle.clock.advance(3600);
        run_jobs(&app).await;
    }
    let delivered = get(&app, "/api/v1/notifications?status=delivered").await;
    assert_eq!(delivered["items"].as_array().expect("items").len(), 2, "{delivered}");
    assert_eq!(hook.seen.lock().expect("lock").len(), 4, "1 + 3 attempts");

    // A receiver that never recovers: the delivery is dead-lettered after its attempts.
    hook.statuses.lock().expect("lock").extend([500; 20]);
    let (status, _) = app
        .admin("POST", &format!("/api/v1/certificates/{id}/renew"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for _ in 0..10 {
        run_jobs(&app).await;
        app.lifecycle.clock.advance(2 * 3600);
    }
    let dead = get(&app, "/api/v1/notifications?status=dead_letter").await;
    assert_eq!(dead["items"].as_array().expect("items").len(), 1, "{dead}");
    assert_eq!(dead["items"][0]["event"], "renewed");
    assert_eq!(dead["items"][0]["attempts"], 8);

    let (_, metrics) = app
        .call("GET", "/api/v1/metrics/prometheus", Some(key_of(Role::Metrics)), None)
        .await;
    let metrics = metrics.as_str().expect("text").to_string();
    for line in [
        "certctl_expiry_alerts_total{channel=\"webhook\",result=\"delivered\",threshold=\"30\"} 1",
        "certctl_expiry_alerts_total{channel=\"webhook\",result=\"retrying\",threshold=\"7\"} 2",
        "certctl_expiry_alerts_total{channel=\"webhook\",result=\"delivered\",threshold=\"7\"} 1",
        "certctl_notifications_total{channel=\"webhook\",event=\"renewed\",result=\"dead_letter\"} 1",
        "certctl_issuance_total{issuer_type=\"local-ca\",outcome=\"issued\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
}

async fn a_failing_issuer_retries_with_backoff_then_alerts(backend: Backend) {
    let hook = receiver().await;
    let host = format!("http://127.0.0.1:{}", hook.addr.port());
    let app = app(
        backend,
        &format!("[webhook]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n"),
    )
    .await;
    let (_, notifier) = app
        .admin(
            "POST",
            "/api/v1/notifiers",
            Some(json!({"name": "hook", "plugin": "webhook", "config": {"url": format!("{host}/x")}})),
        )
        .await;
    let (status, _) = app
        .admin(
            "POST",
            "/api/v1/notification-routes",
            Some(json!({"name": "failures", "notifier_id": notifier["id"], "events": ["renewal_failed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // An issuer whose plugin is no longer loaded (the API refuses to create one, so it is
    // written straight to the store): every attempt fails, and is retried.
    let gone = app
        .store
        .create_instance(
            certctl::model::InstanceKind::Issuer,
            "gone",
            "no-such-plugin",
            &json!({}),
            certctl::store::AuditEntry::new("tester", "fixture", "issuer", ""),
        )
        .await
        .expect("issuer");
    let cert = declare(
        &app,
        json!({"name": "doomed", "common_name": "doomed.example.test", "key_generation": "server",
               "issuer_id": gone.id, "renewal": {"max_attempts": 3}}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    run_jobs(&app).await;
    let job = &get(&app, &format!("/api/v1/jobs?certificate_id={id}")).await["items"][0];
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("pending"), Some(1))
    );
    assert!(
        job["error_message"].as_str().unwrap_or("").contains("no-such-plugin"),
        "{job}"
    );
    assert_eq!(job["error_class"], "other");
    assert_eq!(run_jobs(&app).await, 0, "backoff: not due yet");
    for _ in 0..2 {
        app.lifecycle.clock.advance(3600);
        run_jobs(&app).await;
    }
    let job = &get(&app, &format!("/api/v1/jobs?certificate_id={id}&type=issuance")).await["items"][0];
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("failed"), Some(3)),
        "{job}"
    );
    assert_eq!(
        get(&app, &format!("/api/v1/certificates/{id}")).await["status"],
        "failed"
    );
    run_jobs(&app).await;
    let seen = hook.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "one alert when the job fails for good");
    let event: Value = serde_json::from_slice(&seen[0].1).expect("JSON");
    assert_eq!(event["kind"], "renewal_failed");
    assert!(event["summary"].as_str().unwrap_or("").contains("3 attempt"), "{event}");
}

async fn approval_gates_issuance(backend: Backend) {
    let app = app(backend, "").await;
    let ca = issuer(&app, "internal", json!({})).await;
    let cert = declare(
        &app,
        json!({"name": "gated", "common_name": "gated.example.test", "key_generation": "server",
               "issuer_id": ca, "renewal": {"require_approval": true}}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    let job = get(&app, &format!("/api/v1/jobs?certificate_id={id}")).await["items"][0].clone();
    assert_eq!(job["state"], "awaiting_approval", "{job}");
    assert_eq!(run_jobs(&app).await, 0, "nothing runs before approval");
    let path = format!("/api/v1/jobs/{}/approve", job["id"].as_str().expect("job id"));
    let (status, _) = app.call("POST", &path, Some(key_of(Role::Viewer)), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, approved) = app.call("POST", &path, Some(key_of(Role::Operator)), None).await;
    assert_eq!(
        (status, approved["state"].as_str()),
        (StatusCode::OK, Some("pending")),
        "{approved}"
    );
    let (status, _) = app.call("POST", &path, Some(key_of(Role::Operator)), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "approving twice");
    assert_eq!(run_jobs(&app).await, 1);
    assert_eq!(
        get(&app, &format!("/api/v1/certificates/{id}")).await["status"],
        "active"
    );
    let audit = get(&app, "/api/v1/audit?action=job.approve").await;
    assert_eq!(audit["items"][0]["actor"], "operator-key", "{audit}");
}

/// A notifier that keeps failing is dead-lettered, and the other notifiers hear about it
/// (`plugin_failing`); the failing one is not asked to deliver news of its own failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_notifier_is_reported_to_the_others() {
    let good = receiver().await;
    let bad = receiver().await;
    bad.statuses.lock().expect("lock").extend([500; 20]);
    let grants = format!(
        "[webhook]\noutbound_hosts = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\nallow_private_networks = true\n",
        good.addr.port(),
        bad.addr.port()
    );
    let app = app(Backend::Sqlite, &grants).await;
    let mut ids = Vec::new();
    for (name, r) in [("good", &good), ("bad", &bad)] {
        let (status, n) = app
            .admin(
                "POST",
                "/api/v1/notifiers",
                Some(json!({"name": name, "plugin": "webhook",
                            "config": {"url": format!("http://127.0.0.1:{}/x", r.addr.port())}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{n}");
        ids.push(n["id"].as_str().expect("id").to_string());
        let (status, _) = app
            .admin(
                "POST",
                "/api/v1/notification-routes",
                Some(json!({"name": format!("all-{name}"), "notifier_id": n["id"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let ca = issuer(&app, "internal", json!({})).await;
    declare(
        &app,
        json!({"name": "web", "common_name": "web.example.test", "key_generation": "server", "issuer_id": ca}),
    )
    .await;
    for _ in 0..10 {
        run_jobs(&app).await;
        app.lifecycle.clock.advance(2 * 3600);
    }
    let kinds = |r: &Receiver| -> Vec<String> {
        r.seen
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|(_, body)| serde_json::from_slice::<Value>(body).ok())
            .filter_map(|v| v["kind"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(kinds(&good), vec!["issued", "plugin_failing"]);
    assert!(kinds(&bad).iter().all(|k| k == "issued"), "{:?}", kinds(&bad));
    assert_eq!(kinds(&bad).len(), 8, "every attempt of the one delivery");
}

/// An agent whose heartbeat stopped more than five minutes ago raises one `agent_offline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agents_raise_agent_offline_once() {
    use sqlx::Connection;
    let hook = receiver().await;
    let host = format!("http://127.0.0.1:{}", hook.addr.port());
    let app = app(
        Backend::Sqlite,
        &format!("[webhook]\noutbound_hosts = [\"{host}\"]\nallow_private_networks = true\n"),
    )
    .await;
    let (_, notifier) = app
        .admin(
            "POST",
            "/api/v1/notifiers",
            Some(json!({"name": "hook", "plugin": "webhook", "config": {"url": format!("{host}/x")}})),
        )
        .await;
    let (status, _) = app
        .admin(
            "POST",
            "/api/v1/notification-routes",
            Some(json!({"name": "agents", "notifier_id": notifier["id"], "events": ["agent_offline"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let now = certctl::model::Timestamp::now().0;
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.expect("connect");
    for (name, seen) in [("quiet", now - 600), ("alive", now - 30)] {
        sqlx::query("INSERT INTO agents (id, name, last_heartbeat, created_at) VALUES ($1, $2, $3, $3)")
            .bind(format!("agent-{name}"))
            .bind(name)
            .bind(seen)
            .execute(&mut conn)
            .await
            .expect("agent");
    }
    assert_eq!(scheduler::agent_scan(&app.lifecycle).await.expect("scan"), 1);
    scheduler::agent_scan(&app.lifecycle).await.expect("scan again");
    run_jobs(&app).await;
    let seen = hook.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "once per silence");
    let event: Value = serde_json::from_slice(&seen[0].1).expect("JSON");
    assert_eq!(
        (event["kind"].as_str(), event["subject"].as_str()),
        (Some("agent_offline"), Some("quiet"))
    );
}

/// Two server processes on one PostgreSQL (two lifecycles, two pools, two lease owners): 500
/// issuance jobs, each runs exactly once, and the first-issuance lock leaves one CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_run_five_hundred_issuances_exactly_once() {
    let app = app(Backend::Postgres, "").await;
    let ca = issuer(&app, "shared", json!({})).await;
    for i in 0..500 {
        let (status, body) = app
            .admin(
                "POST",
                "/api/v1/certificates",
                Some(
                    json!({"name": format!("c{i}"), "common_name": format!("c{i}.example.test"),
                            "key_generation": "server", "issuer_id": ca}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let other_store = certctl::store::Store::connect(&app.db.url, 8)
        .await
        .expect("second pool");
    let second = Arc::new(certctl::lifecycle::Lifecycle::new(
        other_store,
        app.lifecycle.plugins.clone(),
        app.lifecycle.keystore.clone(),
        app.lifecycle.metrics.clone(),
    ));
    let (a, b) = tokio::join!(app.lifecycle.run_due_jobs(), second.run_due_jobs());
    let (a, b) = (a.expect("replica a"), b.expect("replica b"));
    assert_eq!(a + b, 500, "every job leased once: {a} + {b}");
    assert!(a > 0 && b > 0, "both replicas worked: {a} + {b}");
    let mut cursor: Option<String> = None;
    let mut jobs = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?type=issuance&limit=500&cursor={c}"),
            None => "/api/v1/jobs?type=issuance&limit=500".to_string(),
        };
        let page = get(&app, &path).await;
        jobs.extend(page["items"].as_array().expect("items").clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(jobs.len(), 500);
    for job in &jobs {
        assert_eq!(
            (job["state"].as_str(), job["attempts"].as_i64()),
            (Some("completed"), Some(1)),
            "{job}"
        );
    }
    let page = get(&app, "/api/v1/certificates?status=active&limit=500").await;
    assert_eq!(page["items"].as_array().expect("items").len(), 500);
    let mut roots = std::collections::BTreeSet::new();
    for cert in page["items"].as_array().expect("items").iter().step_by(25) {
        let id = cert["id"].as_str().expect("id");
        let versions = get(&app, &format!("/api/v1/certificates/{id}/versions")).await;
        assert_eq!(versions.as_array().expect("list").len(), 1, "issued once: {id}");
        let chain = versions[0]["chain_pem"].as_str().expect("chain").to_string();
        roots.insert(chain.split("-----END CERTIFICATE-----").nth(1).expect("CA").to_string());
    }
    assert_eq!(
        roots.len(),
        1,
        "one CA for the instance, not one per racing first issuance"
    );
}

/// A sub-CA: the intermediate's key imported through the API, its certificate in the issuer's
/// configuration; leaves verify to the enterprise root with openssl, and an expired CA is a 422.
async fn an_imported_intermediate_issues_leaves_that_verify_to_the_root(backend: Backend) {
    let app = app(backend, "").await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let sh = |script: &str| run(Command::new("sh").arg("-c").arg(script).current_dir(d));
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.pem -days 30 -subj '/O=Example Corp/CN=Example Root'         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null",
    );
    sh(
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj '/O=Example Corp/CN=Example Issuing CA' 2>/dev/null",
    );
    sh(
        "printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > int.ext",
    );
    sh(
        "openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 20 -extfile int.ext -out int.pem 2>/dev/null",
    );
    let read = |f: &str| std::fs::read_to_string(d.join(f)).expect("read");

    let ca = issuer(&app, "issuing", json!({})).await;
    for role in [Role::Operator, Role::Viewer] {
        let (status, _) = app
            .call(
                "POST",
                &format!("/api/v1/issuers/{ca}/keys"),
                Some(key_of(role)),
                Some(json!({"private_key_pem": read("int.key")})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} may not import keys");
    }
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/issuers/{ca}/keys"),
            Some(json!({"private_key_pem": "-----BEGIN EC PRIVATE KEY-----
AAAA
-----END EC PRIVATE KEY-----
"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("openssl pkcs8"),
        "{body}"
    );
    let (status, key) = app
        .admin(
            "POST",
            &format!("/api/v1/issuers/{ca}/keys"),
            Some(json!({"private_key_pem": read("int.key")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["algorithm"], "ecdsa-p256");
    let (status, body) = app
        .admin(
            "PATCH",
            &format!("/api/v1/issuers/{ca}"),
            Some(
                json!({"config": {"ca_certificate_pem": read("int.pem"), "ca_key_id": key["key_id"],
                                    "ca_chain_pem": read("root.pem"), "max_validity_days": 10,
                                    "default_validity_days": 10}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cert = declare(
        &app,
        json!({"name": "svc", "common_name": "svc.corp.example", "key_generation": "server", "issuer_id": ca}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    run_jobs(&app).await;
    let job = &get(&app, &format!("/api/v1/jobs?certificate_id={id}")).await["items"][0];
    assert_eq!(job["state"], "completed", "{job}");
    std::fs::write(d.join("leaf.pem"), download(&app, id, "cert").await).expect("write");
    let chain = download(&app, id, "chain").await;
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "intermediate and root");
    let verified = sh("openssl verify -CAfile root.pem -untrusted int.pem leaf.pem");
    assert!(verified.contains("leaf.pem: OK"), "{verified}");
    let issuer_line = sh("openssl x509 -noout -issuer -in leaf.pem");
    assert!(issuer_line.contains("Example Issuing CA"), "{issuer_line}");

    // The host signs this issuer's CRL with the imported key.
    let (_, _, crl) = app.raw(&format!("/crl/{ca}")).await;
    std::fs::write(d.join("ca.crl"), crl).expect("write");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-CAfile", "int.pem", "-in", "ca.crl"])
        .current_dir(d)
        .output()
        .expect("openssl crl");
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"), "{out:?}");

    // An expired CA: a clear 422 when the CSR arrives, and nothing is issued.
    let old_key_pair = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "Old CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old_cert = params.self_signed(&old_key_pair).expect("old CA");
    std::fs::write(d.join("old.pem"), old_cert.pem()).expect("write");
    let old = issuer(&app, "old", json!({})).await;
    let pkcs8 = old_key_pair.serialize_pem();
    let (_, old_key) = app
        .admin(
            "POST",
            &format!("/api/v1/issuers/{old}/keys"),
            Some(json!({"private_key_pem": pkcs8})),
        )
        .await;
    let (status, body) = app
        .admin(
            "PATCH",
            &format!("/api/v1/issuers/{old}"),
            Some(json!({"config": {"ca_certificate_pem": read("old.pem"), "ca_key_id": old_key["key_id"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cert = declare(
        &app,
        json!({"name": "late", "common_name": "late.corp.example", "issuer_id": old}),
    )
    .await;
    let late = cert["id"].as_str().expect("id");
    let csr = openssl_csr(
        d,
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "late.corp.example",
        "DNS:late.corp.example",
    );
    let (status, body) = app
        .admin(
            "POST",
            &format!("/api/v1/certificates/{late}/csr"),
            Some(json!({"csr": csr})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or("").contains("expired"),
        "{body}"
    );
    assert_eq!(
        get(&app, &format!("/api/v1/certificates/{late}/versions")).await,
        json!([])
    );
}

crate::on_both_backends!(
    approval_gates_issuance,
    an_imported_intermediate_issues_leaves_that_verify_to_the_root,
    issuance_through_the_api_verifies_with_openssl,
    bad_requests_are_refused_and_nothing_is_written,
    server_keys_renew_by_themselves_when_due,
    revocation_is_listed_on_the_served_crl,
    expiry_alerts_are_routed_deduplicated_retried_and_dead_lettered,
    a_failing_issuer_retries_with_backoff_then_alerts,
);
