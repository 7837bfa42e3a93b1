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

pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx's master, stopped with SIGTERM so it takes its workers along (SIGKILL would orphan them).
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The serial nginx settles on presenting on `port` (after a reload, old workers may answer a
/// new connection for a moment), as `openssl s_client` sees it: `want` if it comes within 5 s.
async fn settled_serial(port: u16, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        last = served_serial(port);
        if last == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// The serial nginx presents on `port`, as `openssl s_client` sees it.
fn served_serial(port: u16) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername web.example.test </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

/// The whole path with the binaries and a real nginx: `certctl-server` (local CA), a
/// `certctl-agent` process registering with the bootstrap token, a certificate declared for it
/// with an nginx target. The agent makes the key, sends the CSR, deploys, reloads nginx and
/// verifies; `openssl s_client` sees the new serial; a renewal is served too; a broken target
/// (key mismatch) is rolled back, nginx keeps the old certificate and the job shows why; an
/// agent killed in the middle of a deployment finishes it after a restart; what it discovers is
/// listed by the server; retiring the agent makes it exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_deploys_to_nginx_renews_rolls_back_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    // nginx on loopback, first with a placeholder certificate.
    let ng = d.join("nginx");
    std::fs::create_dir_all(ng.join("tls")).expect("mkdir");
    std::fs::create_dir_all(ng.join("logs")).expect("mkdir");
    run(std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=placeholder", "-keyout"])
        .arg(ng.join("tls/site.key"))
        .arg("-out")
        .arg(ng.join("tls/site.pem")));
    let nginx_port = free_port();
    let conf = ng.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {p}/tmp-body; proxy_temp_path {p}/tmp-proxy;\n\
             fastcgi_temp_path {p}/tmp-fcgi; uwsgi_temp_path {p}/tmp-uwsgi; scgi_temp_path {p}/tmp-scgi;\n\
             server {{ listen 127.0.0.1:{nginx_port} ssl; server_name web.example.test;\n\
             ssl_certificate {p}/tls/site.pem; ssl_certificate_key {p}/tls/site.key; return 200 ok; }} }}\n",
            p = ng.display()
        ),
    )
    .expect("conf");
    let nginx_args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec!["nginx".to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v.extend([
            "-p".to_string(),
            ng.display().to_string(),
            "-c".to_string(),
            conf.display().to_string(),
        ]);
        v
    };
    let _nginx = StopOnDrop(
        std::process::Command::new("nginx")
            .args(&nginx_args(&[])[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (Debian nginx, installed by scripts/test.sh)"),
    );

    // certctl-server with the local CA only.
    let plugins = d.join("plugins");
    crate::sandbox::copy_shipped(&plugins, &["local-ca"]);
    let port = free_port();
    let log = d.join("server.log");
    let _server = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_certctl-server"))
            .env_clear()
            .env("CERTCTL_DATA_DIR", d.join("data"))
            .env("CERTCTL_SERVER_PORT", port.to_string())
            .env("CERTCTL_PLUGIN_DIRS", &plugins)
            .env("CERTCTL_AGENT_BOOTSTRAP_TOKEN", AGENT_BOOTSTRAP_TOKEN)
            .env("CERTCTL_SCHEDULER_JOB_INTERVAL", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("certctl-server"),
    );
    let ca = d.join("data/tls/ca.crt");
    let url = format!("https://127.0.0.1:{port}");
    let mut admin = None;
    for _ in 0..600 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(k) = text.split_whitespace().find(|w| w.starts_with("cck_"))
            && ca.exists()
        {
            admin = Some(k.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let admin = admin.unwrap_or_else(|| {
        panic!(
            "server did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let client = {
        let pem = std::fs::read(&ca).expect("ca");
        reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .build()
            .expect("client")
    };
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (client, url, admin) = (client.clone(), url.clone(), admin.clone());
        async move {
            for _ in 0..100 {
                let mut req = client
                    .request(method.clone(), format!("{url}{path}"))
                    .bearer_auth(&admin);
                if let Some(b) = &body {
                    req = req.json(b);
                }
                if let Ok(resp) = req.send().await {
                    let status = resp.status().as_u16();
                    return (status, resp.json::<Value>().await.unwrap_or(Value::Null));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("{path}: server unreachable")
        }
    };

    // The agent: registers itself with the bootstrap token.
    let keys = d.join("agent-keys");
    let agent_log = d.join("agent.log");
    let spawn_agent = |extra: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certctl-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CERTCTL_SERVER_URL", &url)
            .env("CERTCTL_SERVER_CA_BUNDLE_PATH", &ca)
            .env("CERTCTL_AGENT_NAME", "web-1")
            .env("CERTCTL_KEY_DIR", &keys)
            .env("CERTCTL_AGENT_POLL_SECONDS", "1")
            .env("CERTCTL_AGENT_HEARTBEAT_SECONDS", "1");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        KillOnDrop(
            cmd.stdout(std::process::Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&agent_log)
                        .expect("log"),
                )
                .spawn()
                .expect("certctl-agent"),
        )
    };
    let mut agent = spawn_agent(&[("CERTCTL_AGENT_BOOTSTRAP_TOKEN", AGENT_BOOTSTRAP_TOKEN.to_string())]);
    let agent_log_text = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    let mut agent_id = None;
    for _ in 0..300 {
        let (_, agents) = call(reqwest::Method::GET, "/api/v1/agents".into(), None).await;
        if let Some(a) = agents
            .as_array()
            .and_then(|l| l.iter().find(|a| a["name"] == "web-1" && a["online"] == true))
        {
            agent_id = Some(a["id"].as_str().expect("id").to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let agent_id = agent_id.unwrap_or_else(|| panic!("the agent did not register:\n{}", agent_log_text()));
    let mode = std::fs::metadata(&keys).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o700), "CERTCTL_KEY_DIR is private");

    let (status, issuer) = call(
        reqwest::Method::POST,
        "/api/v1/issuers".into(),
        Some(json!({"name": "internal", "plugin": "local-ca", "config": {}})),
    )
    .await;
    assert_eq!(status, 201, "{issuer}");
    let target = |key_file: &str| {
        json!({
            "files": [
                {"path": ng.join("tls/site.pem").display().to_string(), "content": "fullchain"},
                {"path": ng.join("tls").join(key_file).display().to_string(), "content": "key"}
            ],
            "check_command": nginx_args(&["-t", "-q"]),
            "reload_command": nginx_args(&["-s", "reload"]),
            "verify": {"address": format!("127.0.0.1:{nginx_port}"), "server_name": "web.example.test"}
        })
    };
    let (status, cert) = call(
        reqwest::Method::POST,
        "/api/v1/certificates".into(),
        Some(
            json!({"name": "web", "common_name": "web.example.test", "issuer_id": issuer["id"],
                    "agent_id": agent_id, "deploy": target("site.key")}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{cert}");
    let id = cert["id"].as_str().expect("id").to_string();

    // Waits for the newest deployment job of the certificate to end; returns it.
    let deployment = |after: usize| {
        let id = id.clone();
        async move {
            for _ in 0..600 {
                let (_, jobs) = call(
                    reqwest::Method::GET,
                    format!("/api/v1/jobs?certificate_id={id}&type=deployment"),
                    None,
                )
                .await;
                let items = jobs["items"].as_array().cloned().unwrap_or_default();
                if items.len() > after
                    && let Some(job) = items
                        .iter()
                        .find(|j| j["state"] == "completed" || j["state"] == "failed")
                    && items
                        .iter()
                        .filter(|j| j["state"] == "completed" || j["state"] == "failed")
                        .count()
                        > after
                {
                    return job.clone();
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            panic!("no deployment ended")
        }
    };
    let first = deployment(0).await;
    assert_eq!(first["state"], "completed", "{first}\n{}", agent_log_text());
    let (_, versions) = call(
        reqwest::Method::GET,
        format!("/api/v1/certificates/{id}/versions"),
        None,
    )
    .await;
    let serial1 = versions[0]["serial"].as_str().expect("serial").to_string();
    assert_eq!(
        settled_serial(nginx_port, &serial1).await,
        serial1,
        "nginx serves the issued certificate"
    );

    // Renewal: a new key and CSR from the agent, a new serial served.
    let (status, _) = call(reqwest::Method::POST, format!("/api/v1/certificates/{id}/renew"), None).await;
    assert_eq!(status, 202);
    let second = deployment(1).await;
    assert_eq!(second["state"], "completed", "{second}\n{}", agent_log_text());
    let (_, versions) = call(
        reqwest::Method::GET,
        format!("/api/v1/certificates/{id}/versions"),
        None,
    )
    .await;
    let serial2 = versions[0]["serial"].as_str().expect("serial").to_string();
    assert_ne!(serial2, serial1);
    assert_eq!(
        settled_serial(nginx_port, &serial2).await,
        serial2,
        "nginx serves the renewed certificate"
    );

    // A broken target: the key goes to a file nginx does not read, so the new certificate and
    // the old key mismatch; `nginx -t` refuses, the agent rolls back, nginx keeps serving.
    let (status, body) = call(
        reqwest::Method::PATCH,
        format!("/api/v1/certificates/{id}"),
        Some(json!({"deploy": target("elsewhere.key")})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(reqwest::Method::POST, format!("/api/v1/certificates/{id}/renew"), None).await;
    assert_eq!(status, 202);
    let third = deployment(2).await;
    assert_eq!(third["state"], "failed", "{third}");
    assert_eq!(third["error_class"], "deployment");
    let message = third["error_message"].as_str().unwrap_or("");
    assert!(
        message.contains("check failed") && message.contains("rolled_back"),
        "{message}"
    );
    assert_eq!(
        settled_serial(nginx_port, &serial2).await,
        serial2,
        "nginx still serves the previous certificate"
    );
    assert!(
        !ng.join("tls/elsewhere.key").exists(),
        "the new file was removed in the rollback"
    );

    // The agent dies in the middle of a deployment: the files are written and the check is
    // running (it waits for a file the test creates). nginx has not been reloaded.
    let check_started = d.join("check-started");
    let check_release = d.join("check-release");
    let mut blocking = target("site.key");
    let mut check = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "touch {s}; while [ ! -e {r} ]; do sleep 0.1; done; exec \"$@\"",
            s = check_started.display(),
            r = check_release.display()
        ),
        "check".to_string(),
    ];
    check.extend(nginx_args(&["-t", "-q"]));
    blocking["check_command"] = json!(check);
    let (status, body) = call(
        reqwest::Method::PATCH,
        format!("/api/v1/certificates/{id}"),
        Some(json!({"deploy": blocking})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(reqwest::Method::POST, format!("/api/v1/certificates/{id}/renew"), None).await;
    assert_eq!(status, 202);
    for _ in 0..600 {
        if check_started.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(check_started.exists(), "the deployment began:\n{}", agent_log_text());
    agent.0.kill().expect("kill the agent");
    agent.0.wait().expect("reap");
    std::fs::write(&check_release, "").expect("release the orphaned check");
    assert_ne!(
        std::fs::read_to_string(ng.join("tls/site.pem")).expect("site.pem"),
        std::fs::read_to_string(ng.join("tls/site.pem.certctl-prev")).expect("prev"),
        "the new files were written before the agent died"
    );
    assert_eq!(served_serial(nginx_port), serial2, "not reloaded yet");

    // Restarted, this time configured as the original's agents are: CERTCTL_AGENT_ID and the
    // agent's own credential in CERTCTL_API_KEY, and a discovery directory. It finishes the
    // deployment (the files are already in place, so only its journal says a reload is due).
    let identity: Value =
        serde_json::from_slice(&std::fs::read(keys.join("agent.json")).expect("agent.json")).expect("identity");
    assert_eq!(identity["id"], agent_id.as_str());
    let mut agent = spawn_agent(&[
        ("CERTCTL_AGENT_ID", agent_id.clone()),
        (
            "CERTCTL_API_KEY",
            identity["credential"].as_str().expect("credential").to_string(),
        ),
        ("CERTCTL_DISCOVERY_DIRS", ng.join("tls").display().to_string()),
    ]);
    let fourth = deployment(3).await;
    assert_eq!(fourth["state"], "completed", "{fourth}\n{}", agent_log_text());
    assert!(
        fourth.to_string().contains("\"resume\""),
        "the report shows the resumed deployment: {fourth}"
    );
    let (_, versions) = call(
        reqwest::Method::GET,
        format!("/api/v1/certificates/{id}/versions"),
        None,
    )
    .await;
    let serial4 = versions[0]["serial"].as_str().expect("serial").to_string();
    assert_ne!(serial4, serial2);
    assert_eq!(
        settled_serial(nginx_port, &serial4).await,
        serial4,
        "nginx serves the certificate of the interrupted deployment"
    );

    // Discovery through the agent: what it found in nginx's directory is listed by the server
    // (the certificate it deployed, and the one before it kept beside it).
    let mut discovered = Vec::new();
    for _ in 0..300 {
        let (_, body) = call(reqwest::Method::GET, "/api/v1/discoveries".into(), None).await;
        discovered = body
            .as_array()
            .or_else(|| body["items"].as_array())
            .cloned()
            .unwrap_or_default();
        if discovered.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let by_path = |file: &str| {
        let path = ng.join("tls").join(file).display().to_string();
        discovered
            .iter()
            .find(|f| f["path"] == path.as_str() && f["index_in_file"] == 0)
            .cloned()
            .unwrap_or_else(|| panic!("{path} not discovered: {discovered:?}\n{}", agent_log_text()))
    };
    let served = by_path("site.pem");
    assert_eq!(served["serial"], serial4.as_str());
    assert_eq!(served["agent_name"], "web-1");
    assert_eq!(served["sans"], json!(["web.example.test"]));
    assert_eq!(by_path("site.pem.certctl-prev")["serial"], serial2.as_str());

    // The agent's keys stayed on the node, 0600.
    let key_files: Vec<_> = walk_files(&keys)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert!(key_files.len() >= 4, "one key per issuance: {key_files:?}");
    for k in &key_files {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(k).expect("key").permissions()) & 0o777;
        assert_eq!(mode, 0o600, "{}", k.display());
    }

    // The CLI sees the same: the agent online, its discoveries; dismissing one; retiring the
    // agent, which then exits 0.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_certctl"))
            .env_clear()
            .env("CERTCTL_SERVER_URL", &url)
            .env("CERTCTL_SERVER_CA_BUNDLE_PATH", &ca)
            .env("CERTCTL_API_KEY", &admin)
            .args(args)
            .output()
            .expect("certctl");
        assert!(
            out.status.success(),
            "certctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let agents = cli(&["agents", "list"]);
    let row = agents.lines().find(|l| l.contains("web-1")).unwrap_or_default();
    assert!(row.contains(&agent_id) && row.contains("online"), "{agents}");
    let listed = cli(&["discoveries", "list", "--state", "new"]);
    assert!(
        listed.contains(&format!("{}#0", ng.join("tls/site.pem").display())),
        "{listed}"
    );
    let prev_id = by_path("site.pem.certctl-prev")["id"].as_str().expect("id").to_string();
    assert!(cli(&["discoveries", "dismiss", &prev_id]).contains("dismissed"));
    let dismissed: Value =
        serde_json::from_str(&cli(&["--json", "discoveries", "list", "--state", "dismissed"])).expect("json");
    assert_eq!(dismissed[0]["id"], prev_id.as_str(), "{dismissed}");
    assert!(cli(&["agents", "retire", &agent_id]).contains("retired"));
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = agent.0.try_wait().expect("wait") {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = exited.unwrap_or_else(|| panic!("the agent did not exit:\n{}", agent_log_text()));
    assert!(
        status.success(),
        "exit 0 when retired: {status:?}\n{}",
        agent_log_text()
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `certctl-agent` refuses bad settings before doing anything, naming the variable and the fix;
/// a flag stands for its variable.
#[test]
fn the_agent_names_bad_settings() {
    let dir = tempfile::tempdir().expect("tmp");
    let keys = dir.path().join("keys").display().to_string();
    let agent = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_certctl-agent"));
        cmd.env_clear().env("CERTCTL_KEY_DIR", &keys).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("certctl-agent");
        assert!(!out.status.success(), "{env:?} {args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let https = ("CERTCTL_SERVER_URL", "https://127.0.0.1:9");
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![], "CERTCTL_SERVER_URL is not set"),
        (
            vec![("CERTCTL_SERVER_URL", "http://certctl:8443")],
            vec![],
            "must be an https:// URL",
        ),
        (
            vec![],
            vec!["--server-url", "ftp://x"],
            "CERTCTL_SERVER_URL=\"ftp://x\"",
        ),
        (
            vec![https, ("CERTCTL_AGENT_NAME", "web 1")],
            vec![],
            "CERTCTL_AGENT_NAME=\"web 1\"",
        ),
        (
            vec![
                https,
                ("CERTCTL_AGENT_ID", "a-1"),
                ("CERTCTL_API_KEY", "cck_not_an_agent_credential"),
            ],
            vec![],
            "CERTCTL_AGENT_ID=a-1 needs CERTCTL_API_KEY set to that agent's own credential",
        ),
        (
            vec![https, ("CERTCTL_AGENT_POLL_SECONDS", "0")],
            vec![],
            "CERTCTL_AGENT_POLL_SECONDS=\"0\"",
        ),
        (
            vec![https, ("CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY", "yes")],
            vec![],
            "expected true or false",
        ),
        (
            vec![https, ("CERTCTL_LOG_FORMAT", "xml")],
            vec![],
            "CERTCTL_LOG_FORMAT=\"xml\"",
        ),
        (
            vec![https, ("CERTCTL_AGENT_NAME", "web-1")],
            vec![],
            "nothing to register with: set CERTCTL_AGENT_BOOTSTRAP_TOKEN",
        ),
    ];
    for (env, args, expected) in cases {
        let stderr = agent(&env, &args);
        assert!(stderr.contains(expected), "{env:?} {args:?}: {stderr}");
    }
}
