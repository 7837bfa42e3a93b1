//! The agents' side of the API: registration with the bootstrap token, one credential per
//! agent bound to its id (an agent cannot act as another, which the original allowed),
//! heartbeats, retirement (410), the work an agent pulls, its CSRs, deployment results on the
//! job, and discovery reports with triage.

use axum::http::StatusCode;
use certctl::auth::Role;
use certctl::plugins::grants::Grants;
use serde_json::{Value, json};

use crate::common::{AGENT_BOOTSTRAP_TOKEN, Backend, TestApp, key_of};
use crate::lifecycle::{get, run, run_jobs};
use crate::sandbox::shipped_dir;

async fn register(app: &TestApp, token: &str, name: &str) -> (StatusCode, Value) {
    app.call(
        "POST",
        "/api/v1/agents",
        Some(token),
        Some(
            json!({"name": name, "hostname": name, "os": "linux", "arch": "x86_64", "version": "0.1.0",
                    "ips": ["192.0.2.10"]}),
        ),
    )
    .await
}

async fn registered(app: &TestApp, name: &str) -> (String, String) {
    let (status, body) = register(app, AGENT_BOOTSTRAP_TOKEN, name).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["agent"]["id"].as_str().expect("id").to_string(),
        body["credential"].as_str().expect("credential").to_string(),
    )
}

async fn agents_register_with_their_own_credentials_bound_to_their_id(backend: Backend) {
    let app = TestApp::new(backend).await;
    // Who may register: the bootstrap token, an agent-role key, an admin; nobody else.
    let (a, a_key) = registered(&app, "node-a").await;
    let (status, body) = register(&app, key_of(Role::Agent), "node-b").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let b = body["agent"]["id"].as_str().expect("id").to_string();
    let b_key = body["credential"].as_str().expect("credential").to_string();
    assert!(b_key.starts_with("cca_"), "{b_key}");
    for role in [Role::Operator, Role::Viewer, Role::Metrics] {
        let (status, _) = register(&app, key_of(role), "node-c").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}");
    }
    let (status, _) = register(&app, "wrong-bootstrap-token-0123456789", "node-c").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Bad input is refused by field.
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/agents",
            Some(AGENT_BOOTSTRAP_TOKEN),
            Some(json!({"name": "node-c", "ips": ["not-an-ip"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "ips.0");

    // A credential works for its own agent only.
    let beat = json!({"hostname": "node-a", "os": "linux", "arch": "x86_64", "version": "0.1.0", "ips": []});
    let (status, _) = app
        .call(
            "POST",
            &format!("/api/v1/agents/{a}/heartbeat"),
            Some(&a_key),
            Some(beat.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [format!("/api/v1/agents/{b}/heartbeat")] {
        let (status, body) = app.call("POST", &path, Some(&a_key), Some(beat.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "agent a acting as b: {body}");
    }
    let (status, _) = app
        .call("GET", &format!("/api/v1/agents/{b}/work"), Some(&a_key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "agent a reading b's work");
    // Nor is an agent credential an API key for anything else.
    let (status, _) = app.call("GET", "/api/v1/certificates", Some(&a_key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Admins see agents and whether they are online, but cannot act as one.
    let listed = get(&app, "/api/v1/agents").await;
    let node_a = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "node-a")
        .expect("node-a listed")
        .clone();
    assert_eq!(node_a["online"], true, "{node_a}");
    assert_eq!(node_a["ips"], json!([]));
    let (status, _) = app.admin("GET", &format!("/api/v1/agents/{a}/work"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Re-registering a name (lost state) rotates its credential; the old one stops working.
    let (status, body) = register(&app, AGENT_BOOTSTRAP_TOKEN, "node-b").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["agent"]["id"], b.as_str(), "same agent");
    let rotated = body["credential"].as_str().expect("credential");
    let (status, _) = app
        .call("GET", &format!("/api/v1/agents/{b}/work"), Some(&b_key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old credential is gone");
    let (status, _) = app
        .call("GET", &format!("/api/v1/agents/{b}/work"), Some(rotated), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Retired: 410 for the agent (it exits), and its name cannot come back.
    let (status, _) = app.admin("POST", &format!("/api/v1/agents/{a}/retire"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .call(
            "POST",
            &format!("/api/v1/agents/{a}/heartbeat"),
            Some(&a_key),
            Some(beat),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    let (status, _) = app
        .call("GET", &format!("/api/v1/agents/{a}/work"), Some(&a_key), None)
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, body) = register(&app, AGENT_BOOTSTRAP_TOKEN, "node-a").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let audit = get(&app, "/api/v1/audit?action=agent.retire").await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
}

/// The key stays on the agent: the server sees a CSR, issues, and hands the agent a deployment
/// job; the agent's report lands on the job. Another agent cannot send a CSR for it.
async fn an_agent_sends_csrs_and_reports_deployments(backend: Backend) {
    let app = TestApp::with_plugins(backend, vec![shipped_dir()], Grants::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (a, a_key) = registered(&app, "web-1").await;
    let (_, other_key) = registered(&app, "web-2").await;
    let (status, ca) = app
        .admin(
            "POST",
            "/api/v1/issuers",
            Some(json!({"name": "internal", "plugin": "local-ca", "config": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ca}");
    let deploy = json!({"files": [{"path": "/etc/nginx/tls/web.pem", "content": "fullchain"}],
                        "reload_command": ["nginx", "-s", "reload"]});
    // A deployment needs an agent, and an agent needs an agent-generated key.
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "x", "common_name": "x.example.test", "deploy": deploy})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "deploy");
    let (status, body) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(json!({"name": "x", "common_name": "x.example.test", "agent_id": a, "key_generation": "server"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "agent_id");

    let (status, cert) = app
        .admin(
            "POST",
            "/api/v1/certificates",
            Some(
                json!({"name": "web", "common_name": "web.example.test", "issuer_id": ca["id"],
                        "agent_id": a, "deploy": deploy}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let id = cert["id"].as_str().expect("id");

    let (status, work) = app
        .call("GET", &format!("/api/v1/agents/{a}/work"), Some(&a_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{work}");
    assert_eq!(work["csr"][0]["certificate_id"], id, "{work}");
    assert_eq!(work["csr"][0]["sans"], json!(["web.example.test"]));
    assert_eq!(work["deploy"], json!([]));

    let key = dir.path().join("web.key");
    let csr = run(std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
        ])
        .arg(&key)
        .args([
            "-subj",
            "/CN=web.example.test",
            "-addext",
            "subjectAltName=DNS:web.example.test",
        ]));
    // Another agent's credential cannot send it; the owner's can.
    let path = format!("/api/v1/agents/{a}/certificates/{id}/csr");
    let (status, _) = app
        .call("POST", &path, Some(&other_key), Some(json!({"csr": csr})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, job) = app.call("POST", &path, Some(&a_key), Some(json!({"csr": csr}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(run_jobs(&app).await, 1, "issued by the server's job runner");
    assert_eq!(
        run_jobs(&app).await,
        0,
        "the deployment job is the agent's, not the runner's"
    );

    let (_, work) = app
        .call("GET", &format!("/api/v1/agents/{a}/work"), Some(&a_key), None)
        .await;
    assert_eq!(work["csr"], json!([]), "{work}");
    let deployment = &work["deploy"][0];
    assert_eq!(deployment["certificate_id"], id, "{work}");
    assert_eq!(deployment["target"], deploy);
    let chain = deployment["chain_pem"].as_str().expect("chain");
    assert!(chain.contains("BEGIN CERTIFICATE"));
    let job_id = deployment["job_id"].as_str().expect("job");

    // The report goes on the job; a failure is visible there with the agent's words.
    let result = format!("/api/v1/agents/{a}/jobs/{job_id}/result");
    let (status, _) = app
        .call(
            "POST",
            &result,
            Some(&a_key),
            Some(
                json!({"error": "reload failed: nginx: [emerg] key values mismatch; rolled back",
                        "report": {"steps": [{"step": "reload", "ok": false}]}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let job = get(&app, &format!("/api/v1/jobs/{job_id}")).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error_class"], "deployment");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("key values mismatch")
    );
    assert_eq!(job["payload"]["report"]["steps"][0]["step"], "reload");
    let (status, _) = app.call("POST", &result, Some(&a_key), Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "reported once");

    // The server never had the private key: it is only on the agent's disk.
    let key_pem = std::fs::read_to_string(&key).expect("key");
    let body_of_key = key_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>();
    let (_, versions) = app
        .admin("GET", &format!("/api/v1/certificates/{id}/versions"), None)
        .await;
    assert_eq!(versions[0]["server_key"], false, "{versions}");
    let (status, _) = app
        .admin("GET", &format!("/api/v1/certificates/{id}/private-key"), None)
        .await;
    assert_ne!(status, StatusCode::OK, "no private key to download");
    let dump = format!("{:?}", app.store.list_versions(id).await.expect("versions"));
    assert!(
        !dump.contains(&body_of_key[..40]),
        "no trace of the key in what the server stored"
    );
}

async fn discoveries_are_reported_and_triaged(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (a, a_key) = registered(&app, "legacy-1").await;
    let found = json!({"path": "/etc/ssl/old.pem", "index_in_file": 0,
        "fingerprint_sha256": "ab".repeat(32), "serial": "0A1B", "subject": "CN=old.example.test",
        "issuer": "CN=Some CA", "sans": ["old.example.test"], "not_before": 1_700_000_000i64,
        "not_after": 1_800_000_000i64, "is_ca": false});
    let report = format!("/api/v1/agents/{a}/discoveries");
    let (status, body) = app
        .call("POST", &report, Some(&a_key), Some(json!({"found": [found.clone()]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["new"], 1);
    let (_, body) = app
        .call("POST", &report, Some(&a_key), Some(json!({"found": [found.clone()]})))
        .await;
    assert_eq!(body["new"], 0, "seen again, not new");
    let mut bad = found.clone();
    bad["fingerprint_sha256"] = json!("xyz");
    let (status, body) = app
        .call("POST", &report, Some(&a_key), Some(json!({"found": [bad]})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "found.0.fingerprint_sha256");

    let listed = get(&app, "/api/v1/discoveries?state=new").await;
    let d = &listed[0];
    assert_eq!(d["agent_name"], "legacy-1");
    assert_eq!(d["sans"], json!(["old.example.test"]));
    let did = d["id"].as_str().expect("id");
    let cert = app.certificate("adopted", "old.example.test").await;
    let (status, _) = app
        .admin(
            "POST",
            &format!("/api/v1/discoveries/{did}/claim"),
            Some(json!({"certificate_id": cert})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let claimed = get(&app, "/api/v1/discoveries?state=claimed").await;
    assert_eq!(claimed[0]["certificate_id"], cert.as_str());
    let (status, _) = app.admin("POST", "/api/v1/discoveries/nope/dismiss", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            "GET",
            "/api/v1/discoveries?state=bogus",
            Some(key_of(Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

crate::on_both_backends!(
    agents_register_with_their_own_credentials_bound_to_their_id,
    an_agent_sends_csrs_and_reports_deployments,
    discoveries_are_reported_and_triaged,
);
