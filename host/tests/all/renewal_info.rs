//! ACME Renewal Information (RFC 9773) on the host side: the scheduler asks the issuer for the
//! CA's suggested window, renews inside it, and hands the replaced certificate to the issuer
//! (ACME `replaces`); a certificate's profile reaches the issuer. The issuer is the test-only
//! `kv-issuer` in `fixed` mode, which reports a configured window and records what it was
//! asked (the ACME plugin's side is tested against recorded exchanges in plugins/acme).

use std::path::Path;
use std::process::Command;

use axum::http::StatusCode;
use certctl::auth::Role;
use certctl::lifecycle::scheduler;
use certctl::plugins::grants::Grants;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, key_of};
use crate::lifecycle::{declare, get, run, run_jobs};
use crate::sandbox::{shipped_dir, testing_dir};

const DAY: i64 = 86_400;

/// A P-256 key, a CSR and `count` self-signed certificates of it for `name` (what the fixed
/// issuer hands out, one per issuance).
fn key_csr_and_certs(dir: &Path, name: &str, count: usize) -> (String, Vec<String>) {
    let key = dir.join("key.pem");
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key));
    let san = format!("subjectAltName=DNS:{name}");
    let subject = format!("/CN={name}");
    let csr = run(Command::new("openssl")
        .args(["req", "-new", "-key"])
        .arg(&key)
        .args(["-subj", &subject, "-addext", &san]));
    let certs = (0..count)
        .map(|i| {
            run(Command::new("openssl")
                .args(["req", "-x509", "-days", "90", "-key"])
                .arg(&key)
                .args([
                    "-subj",
                    &subject,
                    "-addext",
                    &san,
                    "-set_serial",
                    &format!("{}", 1000 + i),
                ]))
        })
        .collect();
    (csr, certs)
}

async fn fixed_issuer(app: &TestApp, config: Value) -> String {
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": "ari-ca", "plugin": "kv-issuer", "config": config})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_string()
}

async fn submit_csr(app: &TestApp, id: &str, csr: &str) {
    let (status, job) = app
        .call(
            "POST",
            &format!("/api/v1/certificates/{id}/csr"),
            Some(key_of(Role::Operator)),
            Some(json!({"csr": csr})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(run_jobs(app).await, 1);
}

async fn recorded(app: &TestApp, issuer: &str, key: &str) -> String {
    let value = app.store.kv_get(issuer, key).await.expect("kv").expect(key);
    String::from_utf8(value).expect("utf-8")
}

fn ts(v: &Value) -> i64 {
    let text = v.as_str().unwrap_or_else(|| panic!("a timestamp: {v}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp()
}

async fn the_scheduler_renews_inside_the_cas_window_and_names_the_replaced_certificate(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir(), testing_dir()], Grants::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (csr, chains) = key_csr_and_certs(dir.path(), "ari.example.test", 2);
    let now = app.lifecycle.clock.now().0;
    let (start, end) = (now + 40 * DAY, now + 41 * DAY);
    let issuer = fixed_issuer(
        &app,
        json!({"mode": "fixed", "chains": chains, "window_start": start, "window_end": end,
               "retry_after": 3600, "explanation_url": "https://ca.example/incident/1"}),
    )
    .await;
    let cert = declare(
        &app,
        json!({"name": "ari", "common_name": "ari.example.test", "issuer_id": issuer, "profile": "shortlived",
               "renewal": {"renew_before_days": 5}}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    submit_csr(&app, id, &csr).await;
    assert_eq!(
        recorded(&app, &issuer, "replaces-0").await,
        "none",
        "a first issuance replaces nothing"
    );
    assert_eq!(
        recorded(&app, &issuer, "profile-0").await,
        "shortlived",
        "the profile reaches the issuer"
    );

    let issued = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert!(issued["renewal_window"].is_null(), "not asked yet: {issued}");
    // The host's own schedule: 5 days before the end of a 90-day certificate.
    let own = ts(&issued["renew_at"]);
    assert!(own > end, "the host's own date is after the CA's window here: {issued}");

    assert_eq!(
        scheduler::renewal_scan(&app.lifecycle).await.expect("scan"),
        0,
        "nothing due yet"
    );
    let asked = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert_eq!(ts(&asked["renewal_window"]["start"]), start, "{asked}");
    assert_eq!(ts(&asked["renewal_window"]["end"]), end, "{asked}");
    assert_eq!(
        asked["renewal_window"]["explanation_url"],
        "https://ca.example/incident/1"
    );
    let renew_at = ts(&asked["renew_at"]);
    assert!(
        (start..end).contains(&renew_at),
        "renew_at {renew_at} inside the window {start}..{end}: {asked}"
    );

    // Changing the renewal policy does not move a date the CA's window set.
    let (status, body) = app
        .admin(
            "PATCH",
            &format!("/api/v1/certificates/{id}"),
            Some(json!({"renewal": {"renew_before_days": 10}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ts(&body["renew_at"]), renew_at, "{body}");

    // Inside the window, the scheduler renews; the issuer learns what is being replaced.
    app.lifecycle.clock.advance(renew_at - now + 1);
    assert_eq!(
        scheduler::renewal_scan(&app.lifecycle).await.expect("scan"),
        1,
        "due in the window"
    );
    submit_csr(&app, id, &csr).await;
    assert_eq!(
        recorded(&app, &issuer, "replaces-1").await.trim(),
        chains[0].trim(),
        "the renewal names the certificate it replaces"
    );
    let renewed = get(&app, &format!("/api/v1/certificates/{id}")).await;
    assert!(
        renewed["renewal_window"].is_null(),
        "a new version's window is asked for afresh: {renewed}"
    );
    let versions = get(&app, &format!("/api/v1/certificates/{id}/versions")).await;
    assert_eq!(versions.as_array().expect("versions").len(), 2);
}

async fn a_window_already_open_renews_at_once_and_a_bad_window_is_ignored(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir(), testing_dir()], Grants::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (csr, chains) = key_csr_and_certs(dir.path(), "late.example.test", 1);
    let now = app.lifecycle.clock.now().0;
    // The CA wants it renewed already (a revocation incident, say).
    let issuer = fixed_issuer(
        &app,
        json!({"mode": "fixed", "chains": chains, "window_start": now - 2 * DAY, "window_end": now - DAY}),
    )
    .await;
    let cert = declare(
        &app,
        json!({"name": "late", "common_name": "late.example.test", "issuer_id": issuer}),
    )
    .await;
    let id = cert["id"].as_str().expect("id");
    submit_csr(&app, id, &csr).await;
    assert_eq!(
        scheduler::renewal_scan(&app.lifecycle).await.expect("scan"),
        1,
        "renewed at once"
    );
    let due = get(&app, &format!("/api/v1/certificates/{id}")).await;
    // The scan's "now": a moment after the test's (the clock is real here).
    let renew_at = ts(&due["renew_at"]);
    assert!(
        (now..now + 60).contains(&renew_at),
        "renew_at is the scan's now, not in the past window: {due}"
    );

    // A window that ends before it starts is the CA's mistake: the host keeps its own date.
    let dir2 = tempfile::tempdir().expect("tmp");
    let (csr2, chains2) = key_csr_and_certs(dir2.path(), "odd.example.test", 1);
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": "bad-window", "plugin": "kv-issuer",
                        "config": {"mode": "fixed", "chains": chains2, "window_start": now + DAY, "window_end": now}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issuer2 = body["id"].as_str().expect("id").to_string();
    let odd = declare(
        &app,
        json!({"name": "odd", "common_name": "odd.example.test", "issuer_id": issuer2}),
    )
    .await;
    let odd_id = odd["id"].as_str().expect("id");
    submit_csr(&app, odd_id, &csr2).await;
    let before = get(&app, &format!("/api/v1/certificates/{odd_id}")).await;
    scheduler::renewal_scan(&app.lifecycle).await.expect("scan");
    let after = get(&app, &format!("/api/v1/certificates/{odd_id}")).await;
    assert!(after["renewal_window"].is_null(), "{after}");
    assert_eq!(after["renew_at"], before["renew_at"], "the host's own schedule stays");
}

async fn a_bad_profile_is_refused_by_name(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir(), testing_dir()], Grants::default()).await;
    for bad in ["", "two words", "x".repeat(65).as_str(), "semi;colon"] {
        let (status, body) = app
            .admin(
                "POST",
                "/api/v1/certificates",
                Some(json!({"name": "p", "common_name": "p.example.test", "profile": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {body}");
        assert_eq!(body["error"]["field"], "profile", "{body}");
    }
    let cert = declare(
        &app,
        json!({"name": "p", "common_name": "p.example.test", "profile": "tlsserver"}),
    )
    .await;
    assert_eq!(cert["profile"], "tlsserver");
    let id = cert["id"].as_str().expect("id");
    let (status, body) = app
        .admin(
            "PATCH",
            &format!("/api/v1/certificates/{id}"),
            Some(json!({"profile": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["profile"].is_null(), "an empty profile removes it: {body}");
}

crate::on_both_backends!(
    the_scheduler_renews_inside_the_cas_window_and_names_the_replaced_certificate,
    a_window_already_open_renews_at_once_and_a_bad_window_is_ignored,
    a_bad_profile_is_refused_by_name,
    a_rate_limit_pauses_every_issuance_of_the_issuer,
);

/// A CA's rate limit holds for the whole issuer instance: the other certificates' issuances
/// wait it out without calling the CA or spending attempts.
async fn a_rate_limit_pauses_every_issuance_of_the_issuer(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir(), testing_dir()], Grants::default()).await;
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": "busy-ca", "plugin": "kv-issuer", "config": {"mode": "rate-limited"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issuer = body["id"].as_str().expect("id").to_string();
    let calls = async || {
        app.store
            .kv_get(&issuer, "calls")
            .await
            .expect("kv")
            .map_or(0, |v| v.len())
    };

    declare(
        &app,
        json!({"name": "first", "common_name": "first.example.test", "key_generation": "server", "issuer_id": issuer}),
    )
    .await;
    // The pause starts when the CA answered: between these two readings of the clock.
    let before = app.lifecycle.clock.now().0;
    assert_eq!(run_jobs(&app).await, 1);
    let after = app.lifecycle.clock.now().0;
    assert_eq!(calls().await, 1);
    let paused = get(&app, &format!("/api/v1/issuers/{issuer}")).await;
    let until = ts(&paused["paused_until"]);
    assert!(
        (before + 120..=after + 120).contains(&until),
        "{before}..{after}: {paused}"
    );
    assert!(
        paused["paused_reason"].as_str().unwrap_or("").contains("rate"),
        "{paused}"
    );

    let second = declare(
        &app,
        json!({"name": "second", "common_name": "second.example.test", "key_generation": "server", "issuer_id": issuer}),
    )
    .await;
    run_jobs(&app).await;
    assert_eq!(calls().await, 1, "the paused issuer's CA is not asked again");
    let jobs = get(
        &app,
        &format!("/api/v1/jobs?certificate_id={}", second["id"].as_str().expect("id")),
    )
    .await;
    let job = &jobs["items"][0];
    assert_eq!(job["state"], "pending", "{job}");
    assert!(job["error_message"].is_null(), "a pause is not a failure: {job}");
    let steps = job["payload"]["steps"].to_string();
    assert!(steps.contains("rate-limited by its CA until"), "{steps}");

    // Once the pause is over the CA is asked again. It refuses again here, which renews the
    // pause: the waiting issuance then either reached the CA itself or is still waiting, but
    // never spent an attempt without reaching it.
    app.lifecycle.clock.advance(121);
    run_jobs(&app).await;
    assert!(calls().await >= 2, "the CA was asked again once the pause was over");
    let jobs = get(
        &app,
        &format!("/api/v1/jobs?certificate_id={}", second["id"].as_str().expect("id")),
    )
    .await;
    let job = &jobs["items"][0];
    assert!(
        job["error_class"] == "rate_limited" || (job["attempts"] == 0 && job["error_class"].is_null()),
        "{job}"
    );
}
